//! `--device`: a device not compiled in is a clear error; an unknown one is a clap error.

use crate::common::*;

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_cuda_feature() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = eval_tiny(&data);
    cmd.args(["--device", "cuda"]);
    let line = fails(&mut cmd, &["cuda"]);
    assert!(
        line.contains("without cuda support") || line.contains("not compiled"),
        "{line}"
    );
    assert!(line.contains("--features cuda"), "{line}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_cuda_feature_in_train() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = taskbench();
    cmd.args(["train", "--head-only", "--device", "cuda:1", "--model"])
        .arg(tiny_bert())
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(s.path("out"));
    let line = fails(&mut cmd, &["cuda"]);
    assert!(
        line.contains("without cuda support") || line.contains("not compiled"),
        "{line}"
    );
    assert!(!s.path("out").exists(), "nothing should be written");
}

#[test]
fn unknown_device_is_a_usage_error() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = eval_tiny(&data);
    cmd.args(["--device", "tpu"]);
    let what = describe(&cmd);
    let out = cmd.output().unwrap();
    let stderr = stderr_of(&out);
    assert_clean(&what, &out);
    assert_eq!(out.status.code(), Some(2), "{what}\n{stderr}");
    assert!(stderr.contains("tpu"), "{stderr}");
    assert!(
        stderr.contains("cpu") && stderr.contains("cuda"),
        "should list the valid devices: {stderr}"
    );
    assert!(stdout_of(&out).is_empty(), "{}", stdout_of(&out));
}
