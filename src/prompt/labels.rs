//! Mapping a generative model's free-text answer to one of the task's labels.
//!
//! This is how hosted APIs and local generative models are scored on classification, so its
//! rules decide accuracy numbers: they are tried in a fixed order, strictest first, and the
//! first rule that applies decides. A rule that finds two different labels stops the search
//! with [`LabelMatch::Invalid`]: an ambiguous answer is wrong, never a coin toss.
//!
//! 1. **Exact**: the output, with surrounding whitespace trimmed, is byte-equal to a label.
//! 2. Everything else works on a **cleaned** output: cheap Unicode folding (full-width forms,
//!    odd spaces, curly quotes, dashes, zero-width characters, Latin accents), case-folding,
//!    removing markdown (`*`, `` ` ``, leading `#` and list bullets), a leading
//!    `Label:`/`Answer:`/`Category:`/`Class:`/`Prediction:`/`Output:`/`Final answer:` or
//!    `The answer is`, surrounding quotes and brackets, and trailing `.,;:!?`. Labels and output
//!    are compared with runs of spaces, `_` and `-` as one separator (`Card Arrival` =
//!    `card_arrival`). The rules, in order:
//!    - (a) **Normalized**: the whole cleaned output equals a label.
//!    - (b) **Closest**, whole answer: the label most similar to the cleaned output (normalized
//!      Levenshtein similarity), if at least [`MIN_SIMILARITY`] and not tied. Tried before c
//!      so that a typo in a long label (`card arival`) is not read as its prefix (`card`).
//!    - (c) **Normalized**, leading: the first line or sentence *starts* with a label as a whole
//!      word (the longest label wins, so `card arrival is late` is `card_arrival`, not `card`)
//!      and names no other label; later sentences, where models explain themselves, may
//!      mention other labels.
//!    - (d) **Normalized**, contained: the output mentions exactly one label as a whole word, a
//!      label inside a longer label's mention not counting (`card arrival` is not `card`).
//!    - (e) **Closest**, first sentence: as b, on the first line or sentence alone
//!      (`Biling. The customer...`).
//! 3. Otherwise **Invalid**.
//!
//! Not handled, on purpose: negation (`not billing` matches `billing`) and synonyms. Both need
//! understanding; a prompt that asks for the label name alone makes them rare.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

/// The least normalized Levenshtein similarity (1 - edits / longer length) for a
/// [`LabelMatch::Closest`]. 0.8 accepts one typo in a five-letter label and rejects a
/// truncated answer like `bill` for `billing` (0.57).
pub const MIN_SIMILARITY: f64 = 0.8;

/// How an output matched a label; the index is into the labels passed to [`parse_label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelMatch {
    Exact(usize),
    Normalized(usize),
    /// `distance` is the Levenshtein edit count between the cleaned output and the label.
    Closest {
        idx: usize,
        distance: usize,
    },
    Invalid,
}

impl LabelMatch {
    /// The matched label's index, or `None` for [`LabelMatch::Invalid`].
    pub fn index(&self) -> Option<usize> {
        match *self {
            LabelMatch::Exact(i) | LabelMatch::Normalized(i) => Some(i),
            LabelMatch::Closest { idx, .. } => Some(idx),
            LabelMatch::Invalid => None,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.index().is_some()
    }
}

/// Maps a model's answer to one of `labels` by the rules in the module doc.
pub fn parse_label(output: &str, labels: &[String]) -> LabelMatch {
    if let Some(i) = labels.iter().position(|l| l == output.trim()) {
        return LabelMatch::Exact(i);
    }
    let cleaned = clean_output(output);
    if cleaned.is_empty() {
        return LabelMatch::Invalid;
    }
    let keys: Vec<String> = labels.iter().map(|l| label_key(l)).collect();
    let out_key = key(&cleaned);
    let segment_key = key(first_segment(&cleaned));
    whole_match(&out_key, &keys)
        .or_else(|| closest_match(&out_key, &keys))
        .or_else(|| leading_match(&segment_key, &keys))
        .or_else(|| contained_match(&out_key, &keys))
        .or_else(|| closest_match(&segment_key, &keys))
        .unwrap_or(LabelMatch::Invalid)
}

/// The comparison key of an answer (or the start of one), as [`parse_label`] cleans it:
/// folded, stripped of markdown, answer prefixes, quotes and trailing punctuation, with runs
/// of spaces, `_` and `-` as one space (`**"Card_Arrival.**` is `card arrival`).
pub(crate) fn answer_key(output: &str) -> String {
    key(&clean_output(output))
}

/// A label's comparison key, the form [`answer_key`] is compared with.
pub(crate) fn label_key(label: &str) -> String {
    key(&fold(label))
}

/// Rule 2a. `Some(Invalid)` when two labels share the key (e.g. `Card` and `card`).
fn whole_match(out_key: &str, keys: &[String]) -> Option<LabelMatch> {
    let hits: Vec<usize> = (0..keys.len()).filter(|&i| keys[i] == out_key).collect();
    decide(&hits)
}

/// Rule 2c: the segment starts with a label; the longest such label wins.
fn leading_match(segment_key: &str, keys: &[String]) -> Option<LabelMatch> {
    let best = (0..keys.len())
        .filter(|&i| !keys[i].is_empty() && word_at(segment_key, 0, &keys[i]))
        .max_by_key(|&i| keys[i].len())?;
    let others = mentions(segment_key, keys);
    if others.iter().any(|&i| keys[i] != keys[best]) {
        return Some(LabelMatch::Invalid);
    }
    Some(LabelMatch::Normalized(best))
}

/// Rule 2d.
fn contained_match(out_key: &str, keys: &[String]) -> Option<LabelMatch> {
    decide(&mentions(out_key, keys))
}

/// Rules 2b and 2e: the most similar label, if similar enough and not tied with another.
fn closest_match(text: &str, keys: &[String]) -> Option<LabelMatch> {
    let mut best: Option<(f64, usize, usize)> = None; // (similarity, label, edits)
    let mut tied = false;
    for (i, k) in keys.iter().enumerate() {
        let sim = strsim::normalized_levenshtein(text, k);
        let edits = strsim::levenshtein(text, k);
        match best {
            Some((s, _, _)) if sim < s => {}
            Some((s, j, _)) if sim == s => tied |= keys[j] != *k,
            _ => {
                best = Some((sim, i, edits));
                tied = false;
            }
        }
    }
    let (sim, idx, distance) = best?;
    if sim < MIN_SIMILARITY {
        return None;
    }
    Some(if tied {
        LabelMatch::Invalid
    } else {
        LabelMatch::Closest { idx, distance }
    })
}

/// One label → a match; several → ambiguous; none → the next rule.
fn decide(hits: &[usize]) -> Option<LabelMatch> {
    match hits {
        [] => None,
        [i] => Some(LabelMatch::Normalized(*i)),
        _ => Some(LabelMatch::Invalid),
    }
}

/// The distinct labels mentioned as whole words in `text`, in label order, leaving out
/// mentions that lie inside a longer label's mention (`card` inside `card arrival`).
fn mentions(text: &str, keys: &[String]) -> Vec<usize> {
    let spans: Vec<(usize, usize, usize)> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .flat_map(|(i, k)| {
            text.match_indices(k.as_str())
                .filter(|(at, _)| word_at(text, *at, k))
                .map(move |(at, _)| (at, at + k.len(), i))
        })
        .collect();
    let mut hits: Vec<usize> = spans
        .iter()
        .filter(|&&(s, e, i)| {
            !spans
                .iter()
                .any(|&(s2, e2, j)| j != i && s2 <= s && e <= e2 && e2 - s2 > e - s)
        })
        .map(|&(_, _, i)| i)
        .collect();
    hits.sort_unstable();
    hits.dedup();
    hits
}

/// Whether `word` occurs in `text` at byte `at` with no letter or digit touching either end.
fn word_at(text: &str, at: usize, word: &str) -> bool {
    let Some(rest) = text.get(at..) else {
        return false;
    };
    if !rest.starts_with(word) {
        return false;
    }
    let before = text[..at].chars().next_back();
    let after = rest[word.len()..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// The first line or sentence: up to a newline, or `.,;!?` followed by a space.
fn first_segment(cleaned: &str) -> &str {
    static END: OnceLock<Regex> = OnceLock::new();
    let end = END.get_or_init(|| Regex::new(r"\n|[.,;!?](\s|$)").expect("valid regex"));
    end.find(cleaned).map_or(cleaned, |m| &cleaned[..m.start()])
}

/// The comparison key: runs of whitespace, `_` and `-` become one space, trimmed.
fn key(folded: &str) -> String {
    let mut out = String::with_capacity(folded.len());
    for word in folded.split(|c: char| c.is_whitespace() || c == '_' || c == '-') {
        if !word.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// Folds and strips the output until nothing more comes off (`**"Label: billing."**`).
fn clean_output(output: &str) -> String {
    let mut s = fold(output).replace(['*', '`'], "");
    loop {
        let next = strip_once(&s);
        if next == s {
            return next;
        }
        s = next;
    }
}

/// One pass of stripping at the ends: whitespace, heading/bullet marks, an answer prefix,
/// quotes and brackets, trailing punctuation.
fn strip_once(s: &str) -> String {
    static PREFIX: OnceLock<Regex> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        Regex::new(
            r"^(?:(?:final\s+|predicted\s+)?(?:label|answer|category|class|classification|prediction|output|intent)\s*[:=]|the\s+(?:correct\s+|final\s+)?(?:label|answer|category|class)\s+is\s*:?)\s*",
        )
        .expect("valid regex")
    });
    let s = s.trim();
    let s = s.trim_start_matches(['#', '•']).trim_start();
    let s = s.strip_prefix("- ").unwrap_or(s);
    let s = prefix.find(s).map_or(s, |m| &s[m.end()..]);
    let s = s.trim_matches(|c: char| "\"'()[]{}<>".contains(c) || c.is_whitespace());
    s.trim_end_matches(['.', ',', ';', ':', '!', '?'])
        .to_owned()
}

/// Cheap Unicode folding plus lower-casing: maps the look-alikes models and spreadsheets
/// produce (full-width letters, non-breaking spaces, curly quotes, dashes, accents) to plain
/// ASCII, without the size of full NFKC tables.
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match fold_char(c) {
            Folded::Drop => {}
            Folded::One(c) => out.extend(c.to_lowercase()),
            Folded::Str(t) => out.push_str(t),
        }
    }
    out
}

enum Folded {
    Drop,
    One(char),
    Str(&'static str),
}

fn fold_char(c: char) -> Folded {
    match c {
        // Combining accents (decomposed é = e + U+0301), zero-width characters, soft hyphen.
        '\u{0300}'..='\u{036F}' | '\u{200B}'..='\u{200D}' | '\u{FEFF}' | '\u{00AD}' => Folded::Drop,
        '\u{FF01}'..='\u{FF5E}' => Folded::One(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)),
        '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => {
            Folded::One(' ')
        }
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => Folded::One('\''),
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '«' | '»' => {
            Folded::One('"')
        }
        '\u{2010}'..='\u{2015}' | '\u{2212}' => Folded::One('-'),
        '…' => Folded::Str("..."),
        'ß' => Folded::Str("ss"),
        'æ' | 'Æ' => Folded::Str("ae"),
        'œ' | 'Œ' => Folded::Str("oe"),
        _ => Folded::One(strip_accent(c)),
    }
}

/// Latin-1 and common Latin Extended-A letters without their accent.
fn strip_accent(c: char) -> char {
    match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => 'A',
        'ç' | 'ć' | 'č' => 'c',
        'Ç' | 'Ć' | 'Č' => 'C',
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'È'..='Ë' | 'Ē' | 'Ė' | 'Ę' | 'Ě' => 'E',
        'ì'..='ï' | 'ī' | 'į' | 'ı' => 'i',
        'Ì'..='Ï' | 'Ī' | 'Į' | 'İ' => 'I',
        'ñ' | 'ń' | 'ň' => 'n',
        'Ñ' | 'Ń' | 'Ň' => 'N',
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => 'o',
        'Ò'..='Ö' | 'Ø' | 'Ō' | 'Ő' => 'O',
        'ù'..='ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'Ù'..='Ü' | 'Ū' | 'Ů' | 'Ű' | 'Ų' => 'U',
        'ý' | 'ÿ' => 'y',
        'Ý' | 'Ÿ' => 'Y',
        'ś' | 'š' => 's',
        'Ś' | 'Š' => 'S',
        'ź' | 'ż' | 'ž' => 'z',
        'Ź' | 'Ż' | 'Ž' => 'Z',
        'ł' => 'l',
        'Ł' => 'L',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn bank() -> Vec<String> {
        labels(&[
            "card",
            "card_arrival",
            "billing",
            "refund",
            "lost_or_stolen_card",
        ])
    }

    fn name(m: LabelMatch) -> Option<String> {
        m.index().map(|i| bank()[i].clone())
    }

    #[test]
    fn exact_match_is_byte_equal_after_trimming_whitespace() {
        assert_eq!(parse_label("billing", &bank()), LabelMatch::Exact(2));
        assert_eq!(parse_label("  billing\n", &bank()), LabelMatch::Exact(2));
        assert_eq!(
            parse_label("card", &bank()),
            LabelMatch::Exact(0),
            "card, not card_arrival"
        );
        assert_eq!(parse_label("card_arrival", &bank()), LabelMatch::Exact(1));
    }

    #[test]
    fn case_quotes_punctuation_and_prefixes_are_normalized() {
        for output in [
            "Billing",
            "BILLING.",
            "\"billing\"",
            "'billing'!",
            "Label: billing",
            "label:billing",
            "Answer: Billing.",
            "Final answer: billing",
            "The answer is: billing",
            "Category = billing",
            "[billing]",
            "(billing)",
        ] {
            assert_eq!(
                parse_label(output, &bank()),
                LabelMatch::Normalized(2),
                "{output:?}"
            );
        }
    }

    #[test]
    fn markdown_is_stripped() {
        for output in [
            "**billing**",
            "**Label:** billing",
            "`billing`",
            "## Billing",
            "- billing",
            "*billing*",
        ] {
            assert_eq!(
                parse_label(output, &bank()),
                LabelMatch::Normalized(2),
                "{output:?}"
            );
        }
    }

    #[test]
    fn spaces_underscores_and_dashes_are_one_separator() {
        for output in [
            "card arrival",
            "Card Arrival",
            "card-arrival",
            "CARD_ARRIVAL.",
            "card  arrival",
        ] {
            assert_eq!(
                parse_label(output, &bank()),
                LabelMatch::Normalized(1),
                "{output:?}"
            );
        }
        assert_eq!(
            parse_label("lost or stolen card", &bank()),
            LabelMatch::Normalized(4)
        );
    }

    #[test]
    fn unicode_look_alikes_fold_to_ascii() {
        assert_eq!(
            parse_label("ｂｉｌｌｉｎｇ", &bank()),
            LabelMatch::Normalized(2)
        );
        assert_eq!(
            parse_label("card\u{00A0}arrival", &bank()),
            LabelMatch::Normalized(1)
        );
        assert_eq!(
            parse_label("\u{201C}billing\u{201D}", &bank()),
            LabelMatch::Normalized(2)
        );
        assert_eq!(
            parse_label("bill\u{200B}ing", &bank()),
            LabelMatch::Normalized(2)
        );
        assert_eq!(
            parse_label("card\u{2013}arrival", &bank()),
            LabelMatch::Normalized(1)
        );
        let french = labels(&["catégorie", "autre"]);
        assert_eq!(parse_label("CATÉGORIE", &french), LabelMatch::Normalized(0));
        assert_eq!(parse_label("categorie", &french), LabelMatch::Normalized(0));
        assert_eq!(
            parse_label("cate\u{0301}gorie", &french),
            LabelMatch::Normalized(0)
        );
    }

    #[test]
    fn an_answer_that_starts_with_a_label_takes_it() {
        let m = parse_label(
            "billing\n\nThe customer was charged twice, not a refund.",
            &bank(),
        );
        assert_eq!(
            m,
            LabelMatch::Normalized(2),
            "explanations may mention other labels"
        );
        assert_eq!(
            name(parse_label("Billing. It mentions a refund too.", &bank())).as_deref(),
            Some("billing")
        );
        assert_eq!(
            name(parse_label(
                "refund - the customer wants money back",
                &bank()
            ))
            .as_deref(),
            Some("refund")
        );
    }

    #[test]
    fn the_longest_leading_label_wins_over_its_prefix() {
        assert_eq!(
            parse_label("card arrival is late", &bank()),
            LabelMatch::Normalized(1)
        );
        assert_eq!(
            parse_label("card_arrival, because the card has not come", &bank()),
            LabelMatch::Normalized(1)
        );
        assert_eq!(
            parse_label("card is blocked", &bank()),
            LabelMatch::Normalized(0)
        );
    }

    #[test]
    fn a_leading_label_is_a_whole_word() {
        // "cardholder" is not "card"; nothing else matches, and it is not close to any label.
        assert_eq!(
            parse_label("cardholder issue", &bank()),
            LabelMatch::Invalid
        );
    }

    #[test]
    fn two_labels_in_the_first_sentence_are_ambiguous() {
        assert_eq!(
            parse_label("billing or refund", &bank()),
            LabelMatch::Invalid
        );
        assert_eq!(parse_label("refund/billing", &bank()), LabelMatch::Invalid);
    }

    #[test]
    fn exactly_one_contained_label_matches() {
        assert_eq!(
            parse_label("I think this text is about billing", &bank()),
            LabelMatch::Normalized(2)
        );
        assert_eq!(
            parse_label("The most fitting label here is card arrival.", &bank()),
            LabelMatch::Normalized(1),
            "card inside card arrival is not a second mention"
        );
        assert_eq!(
            parse_label("This is a case of lost_or_stolen_card.", &bank()),
            LabelMatch::Normalized(4)
        );
    }

    #[test]
    fn two_contained_labels_are_ambiguous() {
        assert_eq!(
            parse_label("It could be billing, or maybe refund.", &bank()),
            LabelMatch::Invalid
        );
        assert_eq!(
            parse_label("Either card arrival or a card problem", &bank()),
            LabelMatch::Invalid,
            "card on its own is a second label"
        );
    }

    #[test]
    fn a_close_typo_is_the_closest_label() {
        assert_eq!(
            parse_label("biling", &bank()),
            LabelMatch::Closest {
                idx: 2,
                distance: 1
            }
        );
        assert_eq!(
            parse_label("Refnd.", &bank()),
            LabelMatch::Closest {
                idx: 3,
                distance: 1
            }
        );
        assert_eq!(
            parse_label("card arival", &bank()),
            LabelMatch::Closest {
                idx: 1,
                distance: 1
            },
            "a typo in card_arrival, not the label card followed by a word"
        );
        assert_eq!(
            parse_label("Biling. The customer was charged twice.", &bank()),
            LabelMatch::Closest {
                idx: 2,
                distance: 1
            },
            "a typo in the first sentence"
        );
    }

    #[test]
    fn a_far_answer_is_invalid() {
        assert_eq!(
            parse_label("bill", &bank()),
            LabelMatch::Invalid,
            "similarity 0.57"
        );
        assert_eq!(parse_label("I don't know", &bank()), LabelMatch::Invalid);
        assert_eq!(parse_label("", &bank()), LabelMatch::Invalid);
        assert_eq!(parse_label("  **\"\"**  ", &bank()), LabelMatch::Invalid);
        assert_eq!(parse_label("billing", &[]), LabelMatch::Invalid);
    }

    #[test]
    fn an_equally_close_pair_is_invalid() {
        let pair = labels(&["cat", "car"]);
        assert_eq!(parse_label("caX", &pair), LabelMatch::Invalid);
        let pair = labels(&["abcde", "abcdf"]);
        assert_eq!(parse_label("abcdx", &pair), LabelMatch::Invalid);
    }

    #[test]
    fn labels_that_normalize_alike_are_ambiguous_unless_exact() {
        let twins = labels(&["Card", "card"]);
        assert_eq!(parse_label("card", &twins), LabelMatch::Exact(1));
        assert_eq!(parse_label("CARD", &twins), LabelMatch::Invalid);
    }

    #[test]
    fn index_and_is_valid() {
        assert_eq!(LabelMatch::Exact(3).index(), Some(3));
        assert_eq!(
            LabelMatch::Closest {
                idx: 1,
                distance: 2
            }
            .index(),
            Some(1)
        );
        assert!(!LabelMatch::Invalid.is_valid());
        assert!(LabelMatch::Normalized(0).is_valid());
    }

    #[test]
    fn matches_serialize_for_reports() {
        let json = |m: LabelMatch| serde_json::to_string(&m).unwrap();
        assert_eq!(json(LabelMatch::Exact(2)), r#"{"exact":2}"#);
        assert_eq!(
            json(LabelMatch::Closest {
                idx: 1,
                distance: 1
            }),
            r#"{"closest":{"idx":1,"distance":1}}"#
        );
        assert_eq!(json(LabelMatch::Invalid), r#""invalid""#);
    }

    #[test]
    fn key_collapses_separators() {
        assert_eq!(key(" card__arrival - now "), "card arrival now");
        assert_eq!(key(""), "");
    }
}
