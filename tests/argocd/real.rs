//! The same cases through a real Argo CD: `make argocd-real` (`hack/argocd-real.sh`) runs
//! every `health_test.yaml` and `action_test.yaml` case with `argocd admin settings
//! resource-overrides health|list-actions|run-action ... --argocd-cm-path
//! deploy/argocd/argocd-cm.yaml` and compares with the expected results. Ignored by
//! `cargo test`: it needs `ARGOCD_BIN`, an `argocd` binary (see the README).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;

use super::{
    action_tests, differences, group_dir, health_cases, kinds, normalise, read_yaml, root,
};

/// `argocd admin settings resource-overrides <args> --argocd-cm-path deploy/argocd/argocd-cm.yaml`.
/// `run-action` prints the changed object through `KUBECTL_EXTERNAL_DIFF` (called with the
/// live and the changed file); `cat` of the second gives the whole changed object.
fn argocd(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(["admin", "settings", "resource-overrides"])
        .args(args)
        .arg("--argocd-cm-path")
        .arg(root().join("argocd-cm.yaml"))
        .env("KUBECTL_EXTERNAL_DIFF", r#"sh -c 'cat "$2"' sh"#)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A health case: `STATUS: ...` and `MESSAGE: ...` as the CLI prints them.
fn health(bin: &Path, input: &Path, status: &str, message: &str) -> Result<(), String> {
    let output = argocd(bin, &["health", &path_arg(input)]);
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(format!("argocd failed: {stderr}{stdout}"));
    }
    let got_status = stdout
        .lines()
        .find_map(|l| l.strip_prefix("STATUS: "))
        .unwrap_or_default();
    let got_message = stdout
        .split_once("MESSAGE: ")
        .map(|(_, m)| m.strip_suffix('\n').unwrap_or(m))
        .unwrap_or_default();
    if got_status == status && got_message == message {
        Ok(())
    } else {
        Err(format!(
            "expected {status} {message:?}, argocd says {got_status} {got_message:?}"
        ))
    }
}

/// A discovery case: the names and `disabled` of `list-actions` (it prints no other field).
fn discovery(bin: &Path, input: &Path, expected: &Json) -> Result<(), String> {
    let output = argocd(bin, &["list-actions", &path_arg(input)]);
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(format!("argocd failed: {stderr}{stdout}"));
    }
    let mut got: Vec<(String, bool)> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            Some((fields.next()?.to_owned(), fields.next()? == "true"))
        })
        .collect();
    let mut want: Vec<(String, bool)> = expected
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["disabled"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    got.sort();
    want.sort();
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "expected (name, disabled) {want:?}, argocd lists {got:?}"
        ))
    }
}

/// An action case: an expected error in argocd's output, or the fields the action changes
/// (from the input to the expected file, and from the input to argocd's result) equal.
fn action(bin: &Path, dir: &Path, test: &Json) -> Result<(), String> {
    let name = test["action"].as_str().ok_or("no action")?;
    let input_path = dir.join(test["inputPath"].as_str().ok_or("no inputPath")?);
    let mut args = vec![
        "run-action".to_owned(),
        path_arg(&input_path),
        name.to_owned(),
    ];
    for (key, value) in test["parameters"].as_object().into_iter().flatten() {
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        args.push("--param".to_owned());
        args.push(format!("{key}={value}"));
    }
    let now = jiff::Timestamp::now();
    let output = argocd(bin, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let (stdout, stderr) = text(&output);
    if let Some(message) = test["expectedErrorMessage"].as_str() {
        return if !output.status.success() && (stderr.contains(message) || stdout.contains(message))
        {
            Ok(())
        } else {
            Err(format!(
                "expected an error saying {message:?}, argocd: {stderr}{stdout}"
            ))
        };
    }
    if !output.status.success() {
        return Err(format!("argocd failed: {stderr}{stdout}"));
    }
    let input = read_yaml(&input_path);
    let mut got = match stdout.split_once("Following fields have been changed:\n\n") {
        Some((_, changed)) => serde_norway::from_str::<Json>(changed)
            .map_err(|e| format!("argocd's changed object is not YAML ({e}): {changed}"))?,
        None => input.clone(),
    };
    let expected = read_yaml(
        &dir.join(
            test["expectedOutputPath"]
                .as_str()
                .ok_or("no expectedOutputPath")?,
        ),
    );
    normalise(&input, &expected, &mut got, now);
    let (mut want_changed, mut got_changed) = (Vec::new(), Vec::new());
    differences(&input, &expected, "", &mut want_changed);
    differences(&input, &got, "", &mut got_changed);
    let mut problems = Vec::new();
    if want_changed != got_changed {
        problems.push(format!(
            "changes {got_changed:?}, expected changes {want_changed:?}"
        ));
    }
    for path in &want_changed {
        let (want, found) = (expected.pointer(path), got.pointer(path));
        if want != found {
            problems.push(format!("{path}: expected {want:?}, argocd gives {found:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
#[ignore = "needs ARGOCD_BIN, an argocd binary: make argocd-real"]
fn argocd_real() {
    let bin = PathBuf::from(
        std::env::var_os("ARGOCD_BIN")
            .expect("set ARGOCD_BIN to an argocd binary (make argocd-real)"),
    );
    let mut failures = Vec::new();
    // (passed, run) for health, discovery and action cases.
    let mut tally = [(0, 0); 3];
    let mut count = |i: usize, label: String, result: Result<(), String>| {
        tally[i].1 += 1;
        match result {
            Ok(()) => tally[i].0 += 1,
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    };
    for kind in kinds() {
        for case in health_cases(&kind) {
            let label = format!("health {}", case.input.display());
            count(
                0,
                label,
                health(&bin, &case.input, &case.status, &case.message),
            );
        }
        let Some(tests) = action_tests(&kind) else {
            continue;
        };
        let dir = group_dir().join(&kind).join("actions");
        for t in tests["discoveryTests"].as_array().into_iter().flatten() {
            let input = dir.join(t["inputPath"].as_str().expect("inputPath"));
            let label = format!("list-actions {}", input.display());
            count(1, label, discovery(&bin, &input, &t["result"]));
        }
        for t in tests["actionTests"].as_array().into_iter().flatten() {
            let label = format!(
                "run-action {} {}",
                t["action"].as_str().unwrap_or_default(),
                dir.join(t["inputPath"].as_str().unwrap_or_default())
                    .display()
            );
            count(2, label, action(&bin, &dir, t));
        }
    }
    for failure in &failures {
        println!("[argocd-real] MISMATCH {failure}");
    }
    let [(h, hn), (d, dn), (a, an)] = tally;
    println!(
        "[argocd-real] {} of {} cases passed in {}: health {h}/{hn}, discovery {d}/{dn}, actions {a}/{an}",
        h + d + a,
        hn + dn + an,
        bin.display()
    );
    assert!(
        failures.is_empty(),
        "{} cases differ in the real Argo CD",
        failures.len()
    );
}
