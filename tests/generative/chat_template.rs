//! Chat templates render as transformers' `apply_chat_template` does
//! (`tests/fixtures/smollm2/hf-chat-templates.json`, made by `scripts/make_chat_fixtures.py`),
//! SmolLM2's GGUF template is read with its special tokens, and broken templates fail with the
//! line they fail at.

use candle_core::quantized::gguf_file;
use taskbench::models::causal::template::{ChatTemplate, TemplateError};
use taskbench::models::causal::CausalLm;
use taskbench::models::Message;

use crate::scratch::Scratch;
use crate::{fixtures, smollm2, smollm2_path};

/// `tokenizer.chat_template` of SmolLM2-135M-Instruct.
const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[test]
fn smollm2_template_matches_hand_written_expectation() {
    let template = ChatTemplate::new(SMOLLM2_TEMPLATE).unwrap();
    let rendered = template
        .render(&[Message::user("Is 7 prime?")], true)
        .unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nIs 7 prime?<|im_end|>\n\
         <|im_start|>assistant\n"
    );

    let rendered = template
        .render(
            &[
                Message::system("Answer with one word."),
                Message::user("Colour of the sky?"),
                Message::assistant("Blue"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nAnswer with one word.<|im_end|>\n\
         <|im_start|>user\nColour of the sky?<|im_end|>\n\
         <|im_start|>assistant\nBlue<|im_end|>\n"
    );
}

#[test]
fn smollm2_gguf_template_opens_the_assistant_turn_after_the_default_system_prompt() {
    let path = smollm2_path();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let template = ChatTemplate::from_gguf(&content)
        .unwrap()
        .expect("SmolLM2's GGUF has tokenizer.chat_template");
    assert_eq!(template.source(), SMOLLM2_TEMPLATE);
    let debug = format!("{template:?}");
    assert!(
        debug.contains("Some(\"<|im_start|>\")") && debug.contains("<|im_end|>"),
        "BOS/EOS texts from the GGUF: {debug}"
    );

    let model = smollm2();
    assert!(model.has_chat_template());
    let expected = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
                    <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(
        model.prompt_text(&[Message::user("Hi")], false).unwrap(),
        expected
    );
    assert_eq!(
        template.render(&[Message::user("Hi")], true).unwrap(),
        expected
    );
    // Raw prompts skip the template.
    assert_eq!(
        model
            .prompt_text(&[Message::system("a"), Message::user("b")], true)
            .unwrap(),
        "a\n\nb"
    );
}

#[test]
fn chat_template_file_errors_name_the_file_and_line_when_loading_a_model() {
    let scratch = Scratch::new();
    let broken = scratch.write(
        "broken.jinja",
        "{% for m in messages %}\n{{ m.content }\n{% endfor %}\n",
    );
    let err = match CausalLm::load(&fixtures().join("tiny-llama"), Some(&broken)) {
        Ok(_) => panic!("a template with a syntax error loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("broken.jinja") && err.contains("syntax error") && err.contains("line 2"),
        "{err}"
    );

    let fine = scratch.write(
        "fine.jinja",
        "{{ bos_token }}{{ messages[0].content }}|{{ eos_token }}",
    );
    let model = CausalLm::load(&fixtures().join("tiny-llama"), Some(&fine)).unwrap();
    assert_eq!(
        model.prompt_text(&[Message::user("x")], false).unwrap(),
        "<|im_start|>x|<|im_end|>",
        "--chat-template gets the model's BOS/EOS texts"
    );
}

#[derive(serde::Deserialize)]
struct HfCase {
    name: String,
    template: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    bos_token: String,
    eos_token: String,
    rendered: String,
}

#[test]
fn renders_like_transformers() {
    let text = std::fs::read_to_string(fixtures().join("smollm2/hf-chat-templates.json")).unwrap();
    let cases: Vec<HfCase> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 40, "transformers cases in the fixture");
    let mut failures = Vec::new();
    for case in &cases {
        let template = ChatTemplate::with_origin(case.template.clone(), case.name.clone())
            .unwrap()
            .with_special_tokens(Some(case.bos_token.clone()), Some(case.eos_token.clone()));
        let ours = template
            .render(&case.messages, case.add_generation_prompt)
            .unwrap();
        if ours != case.rendered {
            failures.push(format!(
                "{}:\n--- transformers\n{}\n--- ours\n{}",
                case.name, case.rendered, ours
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn syntax_error_names_line_and_problem() {
    let source = "{% for message in messages %}\n{{ message.content }\n{% endfor %}";
    let err = ChatTemplate::with_origin(source, "broken.jinja").unwrap_err();
    assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
    assert_eq!(err.line(), Some(2));
    let text = err.to_string();
    assert!(text.contains("broken.jinja"), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("{{ message.content }"), "{text}");

    let unclosed = "{% if messages %}\nhello\n{% for m in messages %}{{ m.role }}";
    let err = ChatTemplate::new(unclosed).unwrap_err();
    assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
    assert!(err.line().is_some(), "{err:?}");
    assert!(err.to_string().contains("syntax error"), "{err}");
}

#[test]
fn raise_exception_reports_message_and_line() {
    let source = "{% for m in messages %}\n\
                  {% if m.role not in ['user', 'assistant'] %}\n\
                  {{ raise_exception('Only user and assistant roles are supported, got ' + m.role) }}\n\
                  {% endif %}\n\
                  {{ m.content }}\n\
                  {% endfor %}";
    let template = ChatTemplate::with_origin(source, "strict.jinja").unwrap();
    assert_eq!(
        template.render(&[Message::user("ok")], false).unwrap(),
        "ok\n"
    );
    let err = template
        .render(&[Message::system("nope")], false)
        .unwrap_err();
    match &err {
        TemplateError::Raised { message, line, .. } => {
            assert_eq!(
                message,
                "Only user and assistant roles are supported, got system"
            );
            assert_eq!(*line, Some(3));
        }
        other => panic!("expected Raised, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("strict.jinja") && text.contains("line 3"),
        "{text}"
    );
}

#[test]
fn render_errors_name_the_line() {
    let template = ChatTemplate::new("line one\n{{ messages[0].content.nosuchmethod() }}").unwrap();
    let err = template.render(&[Message::user("x")], false).unwrap_err();
    assert!(matches!(err, TemplateError::Render { .. }), "{err:?}");
    assert_eq!(err.line(), Some(2), "{err}");
}

#[test]
fn strftime_now_and_loop_controls() {
    let template = ChatTemplate::new(
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}|{{ strftime_now('%Y') }}",
    )
    .unwrap();
    let out = template
        .render(&[Message::user("first"), Message::user("second")], false)
        .unwrap();
    let (head, year) = out.split_once('|').unwrap();
    assert_eq!(head, "first");
    assert!(
        year.len() == 4 && year.parse::<u32>().unwrap() >= 2024,
        "{out}"
    );
}

#[test]
fn tokenizer_config_json_forms() {
    let config = r#"{
        "bos_token": {"content": "<s>", "lstrip": false},
        "eos_token": "</s>",
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"}
        ]
    }"#;
    let template = ChatTemplate::from_tokenizer_config(config).unwrap();
    assert_eq!(
        template.render(&[Message::user("hi")], true).unwrap(),
        "<s>[user] hi</s>"
    );
    let err = ChatTemplate::from_tokenizer_config(r#"{"eos_token": "</s>"}"#).unwrap_err();
    assert!(err.to_string().contains("no chat_template"), "{err}");
}

#[test]
fn template_from_file_and_hf_dir() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": "<s>", "eos_token": "</s>", "chat_template": "config {{ bos_token }}"}"#,
    )
    .unwrap();
    let from_config = ChatTemplate::from_hf_dir(dir).unwrap();
    assert_eq!(from_config.render(&[], false).unwrap(), "config <s>");

    std::fs::write(dir.join("chat_template.jinja"), "jinja {{ eos_token }}\n").unwrap();
    let from_jinja = ChatTemplate::from_hf_dir(dir).unwrap();
    assert_eq!(from_jinja.render(&[], false).unwrap(), "jinja </s>");

    let from_file = ChatTemplate::from_file(dir.join("chat_template.jinja")).unwrap();
    assert_eq!(from_file.render(&[], false).unwrap(), "jinja ");

    let missing = ChatTemplate::from_file(dir.join("missing.jinja")).unwrap_err();
    assert!(missing.to_string().contains("missing.jinja"), "{missing}");
}
