//! The shape the code keeps (docs/architecture.md): every kind has the same rooms, every write
//! goes through `src/write.rs`, every well-known key lives in `src/well_known.rs`, and no file is
//! more than about a thousand lines of code (tests live in sibling files). A change that breaks
//! one of these fails here, with the place to look.

use std::path::{Path, PathBuf};

const KINDS: [&str; 5] = [
    "runbook",
    "runbook_run",
    "maintenance_window",
    "blue_green",
    "backup_policy",
];
const ROOMS: [&str; 6] = ["types", "observe", "decide", "status", "act", "controller"];
/// Most lines of non-test code in one file.
const MAX_CODE_LINES: usize = 1_000;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Whether a file holds only tests (a `tests.rs` sibling or inside a `tests/` folder).
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// The non-test code of a file: everything before an inline `#[cfg(test)]` module.
fn code_of(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src().parent().expect("repo root"))
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_kind_has_the_same_rooms() {
    let mut missing = Vec::new();
    for kind in KINDS {
        for room in ROOMS {
            let file = src().join(kind).join(format!("{room}.rs"));
            let folder = src().join(kind).join(room).join("mod.rs");
            if !file.exists() && !folder.exists() {
                missing.push(format!("src/{kind}/{room}.rs"));
            }
        }
    }
    assert!(missing.is_empty(), "rooms missing: {missing:?}");
}

#[test]
fn every_write_goes_through_the_write_path() {
    // The kubectl plugin and its dashboard write as the person using them, not as the
    // operator: through their own one write path.
    let exempt = ["src/write.rs", "src/plugin/actions.rs"];
    let calls = [
        ".create(&",
        ".patch(&",
        ".patch_status(&",
        ".patch_scale(&",
        ".replace(&",
        ".replace_status(&",
        ".delete(&",
        ".delete_collection(&",
        "PatchParams::",
        "PostParams::",
        "PatchParams {",
        "PostParams {",
    ];
    let mut found = Vec::new();
    for path in rust_files(&src()) {
        let name = relative(&path);
        if is_test_file(&path) || exempt.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        let code: Vec<&str> = code_of(&text)
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect();
        let joined = code.join("\n");
        for call in calls {
            for (at, _) in joined.match_indices(call) {
                // The statement the call is part of, back to the previous `;`, `{` or `}`: a
                // call sent through the write path names its `writer` there, even when
                // rustfmt put `.create(` on a line of its own.
                let start = joined[..at].rfind([';', '{', '}']).map_or(0, |i| i + 1);
                let statement = &joined[start..at];
                if !statement.contains("writer") && !statement.contains("Writer") {
                    let line = joined[..at].matches('\n').count();
                    found.push(format!("{name}:{}: {}", line + 1, code[line].trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "writes outside src/write.rs (send them through write::Writer):\n{}",
        found.join("\n")
    );
}

#[test]
fn well_known_keys_are_written_once() {
    let mut found = Vec::new();
    for path in rust_files(&src()) {
        let name = relative(&path);
        if is_test_file(&path) || name == "src/well_known.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for (number, line) in code_of(&text).lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains("\"ops.runbook.dev/") {
                found.push(format!("{name}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "label/annotation/finalizer keys outside src/well_known.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_file_holds_more_than_a_thousand_lines_of_code() {
    let mut long = Vec::new();
    for path in rust_files(&src()) {
        if is_test_file(&path) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        let lines = code_of(&text).lines().count();
        if lines > MAX_CODE_LINES {
            long.push(format!("{} ({lines} lines of code)", relative(&path)));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_CODE_LINES} lines of code: split them by concern:\n{}",
        long.join("\n")
    );
}

#[test]
fn inline_test_modules_are_short() {
    // Long test modules live in a sibling `tests.rs`, so a file reads as its code.
    let mut long = Vec::new();
    for path in rust_files(&src()) {
        let text = std::fs::read_to_string(&path).expect("read source");
        let tests = text.len() - code_of(&text).len();
        let lines = text[text.len() - tests..].lines().count();
        if lines > 150 {
            long.push(format!(
                "{} ({lines} lines of inline tests)",
                relative(&path)
            ));
        }
    }
    assert!(
        long.is_empty(),
        "move these tests to a sibling tests.rs:\n{}",
        long.join("\n")
    );
}

/// The module path of a source file (`src/a/b.rs` -> `a::b`, `src/a/mod.rs` -> `a`), or `None`
/// for the crate roots, the plugin binary and test files.
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    if rel.starts_with("bin") || is_test_file(path) {
        return None;
    }
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [only] if only == "lib" || only == "main" => None,
        _ => Some(parts.join("::")),
    }
}

/// The names a file declares `pub` (items, modules and `pub use` of a single name).
fn declared(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        let Some(rest) = line
            .strip_prefix("pub ")
            .or_else(|| line.strip_prefix("pub(crate) "))
            .or_else(|| line.strip_prefix("pub(super) "))
        else {
            continue;
        };
        let rest = rest.strip_prefix("async ").unwrap_or(rest);
        for keyword in [
            "struct ", "enum ", "fn ", "const ", "static ", "type ", "trait ", "mod ",
        ] {
            if let Some(name) = rest.strip_prefix(keyword) {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        }
    }
    names
}

/// Paths after `crate::` or `super::` in `code`, `super` resolved against `parent`.
fn referenced_paths(code: &str, parent: &str) -> Vec<String> {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", ""), ("super::", parent)] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            let path: String = rest.chars().take_while(|c| word(*c)).collect();
            let path = path.trim_end_matches(':');
            let join = |tail: &str| match base {
                "" => tail.to_owned(),
                _ => format!("{base}::{tail}"),
            };
            // `use crate::a::{b, c::D}`: each name inside the braces.
            if rest[path.len()..].starts_with("::{") || (path.is_empty() && rest.starts_with('{')) {
                let open = rest.find('{').unwrap_or(0);
                let close = rest[open..].find("};").map_or(rest.len(), |c| open + c);
                for item in rest[open + 1..close].split([',', '{', '}', ' ', '\n']) {
                    let item = item.trim();
                    if !item.is_empty() && item != "self" {
                        let head = if path.is_empty() {
                            String::new()
                        } else {
                            format!("{path}::")
                        };
                        paths.push(join(&format!("{head}{item}")));
                    }
                }
            }
            if !path.is_empty() {
                paths.push(join(path));
            }
        }
    }
    paths
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let modules: Vec<(String, PathBuf, String)> = rust_files(&src())
        .into_iter()
        .filter_map(|path| {
            let module = module_of(&path)?;
            let text = std::fs::read_to_string(&path).expect("read source");
            let code: String = code_of(&text)
                .lines()
                .map(|line| line.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            Some((module, path, code))
        })
        .collect();
    let find = |module: &str| modules.iter().find(|(m, _, _)| m == module);
    // Where `path` is defined: the longest module prefix, and for an item named through a
    // folder's mod.rs (re-exported with `pub use`), the child file that declares it.
    let resolve = |path: &str| -> Option<String> {
        let segments: Vec<&str> = path.split("::").collect();
        for end in (1..=segments.len()).rev() {
            let module = segments[..end].join("::");
            let Some((_, file, code)) = find(&module) else {
                continue;
            };
            if let Some(name) = segments.get(end)
                && file.ends_with("mod.rs")
                && !declared(code).iter().any(|d| d == name)
            {
                let child = modules.iter().find(|(m, _, c)| {
                    m.strip_prefix(&format!("{module}::"))
                        .is_some_and(|tail| !tail.contains("::"))
                        && declared(c).iter().any(|d| d == name)
                });
                if let Some((child, _, _)) = child {
                    return Some(child.clone());
                }
            }
            return Some(module);
        }
        None
    };
    let mut imports: Vec<(String, String)> = Vec::new();
    for (module, file, code) in &modules {
        let parent = match file.ends_with("mod.rs") {
            true => module.rsplit_once("::").map_or("", |(p, _)| p),
            false => module.rsplit_once("::").map_or("", |(p, _)| p),
        };
        for path in referenced_paths(code, parent) {
            if let Some(target) = resolve(&path)
                && &target != module
                && !imports.contains(&(module.clone(), target.clone()))
            {
                imports.push((module.clone(), target));
            }
        }
    }
    let mut circles: Vec<String> = imports
        .iter()
        .filter(|(a, b)| a < b && imports.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{a} <-> {b}"))
        .collect();
    circles.sort();
    assert!(
        circles.is_empty(),
        "modules that import each other (move what both need to a shared module):\n{}",
        circles.join("\n")
    );
}
