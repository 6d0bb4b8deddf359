//! Argo CD health checks and resource actions (`deploy/argocd/`).
//!
//! Every `health_test.yaml` and `actions/action_test.yaml` under `deploy/argocd/ops.runbook.dev/`
//! runs here, in Argo CD's own test format, on Lua 5.1 (PUC Lua 5.1.5 through mlua; Argo CD's
//! engine, gopher-lua, implements the same dialect) inside a reproduction of the sandbox Argo CD
//! builds for `argocd-cm` scripts (util/lua/lua.go): the base, `package` and `table` libraries,
//! no global `os` (its safe `os`, with only `date` and `time`, is reached as
//! `local os = require("os")`), no `string` library (and so no string methods), no `math`, no
//! `io`; `obj` and `actionParams` set as Argo CD sets them; a one-second budget. Reading a global
//! Argo CD does not provide is an error here.
//!
//! `deploy/argocd/argocd-cm.yaml` is generated from that tree; a test fails when it drifts
//! (`make argocd` rewrites it). `real` runs the same cases through a real `argocd` binary
//! (`make argocd-real`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, LuaSerdeExt, StdLib, Table, Value, VmState};
use serde_json::{Map, Value as Json, json};

#[path = "argocd/real.rs"]
mod real;

/// The API group: the folder under `deploy/argocd/` and the key suffix in `argocd-cm`.
const GROUP: &str = "ops.runbook.dev";
/// Argo CD cancels a script after one second (`context.WithTimeout` in util/lua/lua.go).
const BUDGET: Duration = Duration::from_secs(1);
/// Statuses Argo CD accepts from a health script; anything else becomes Unknown.
const HEALTH_STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];
/// Annotations our actions set to the current time: compared by shape and closeness to now,
/// like Argo CD's own tests normalise `restartedAt`.
const RUN_TIME_ANNOTATIONS: [&str; 3] = [
    "ops.runbook.dev/run-now",
    "ops.runbook.dev/backup-now",
    "ops.runbook.dev/cancel",
];
/// The annotations actions may set: the operator's request annotations, nothing in the spec.
const REQUEST_ANNOTATIONS: [&str; 8] = [
    "ops.runbook.dev/run-now",
    "ops.runbook.dev/approve",
    "ops.runbook.dev/reject",
    "ops.runbook.dev/cancel",
    "ops.runbook.dev/backup-now",
    "ops.runbook.dev/promote",
    "ops.runbook.dev/abort",
    "ops.runbook.dev/retry",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd")
}

fn group_dir() -> PathBuf {
    root().join(GROUP)
}

/// The kinds with a folder, sorted.
fn kinds() -> Vec<String> {
    let mut kinds: Vec<String> = std::fs::read_dir(group_dir())
        .expect("deploy/argocd/ops.runbook.dev exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    kinds.sort();
    kinds
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_yaml(path: &Path) -> Json {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// --- the sandbox ---------------------------------------------------------------------------------

/// The globals of Argo CD's Lua state (util/lua/lua.go `runLuaWithResourceActionParameters`):
/// `lua.NewState(lua.Options{SkipOpenLibs: true})`, then gopher-lua's `OpenPackage`, `OpenBase`
/// and `OpenTable`, then `OpenSafeOs`, which registers into the already loaded `table` module
/// and so adds nothing: there is no global `os`. `os` (`date`, `time`) is only
/// `package.preload.os`, reached with `local os = require("os")`. No `string` library, so no
/// string metatable either (`s:sub(1)` fails: gopher-lua sets it only in `OpenString`), no
/// `math`, `io`, `coroutine` or `debug`. `obj` and `actionParams` (an empty table for health
/// and discovery scripts) are set before the script runs.
const ARGOCD_GLOBALS: [&str; 36] = [
    "_G",
    "_GOPHER_LUA_VERSION",
    "_VERSION",
    "_printregs",
    "actionParams",
    "assert",
    "collectgarbage",
    "dofile",
    "error",
    "getfenv",
    "getmetatable",
    "ipairs",
    "load",
    "loadfile",
    "loadstring",
    "module",
    "newproxy",
    "next",
    "obj",
    "package",
    "pairs",
    "pcall",
    "print",
    "rawequal",
    "rawget",
    "rawset",
    "require",
    "select",
    "setfenv",
    "setmetatable",
    "table",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
];

/// A Lua 5.1 state as Argo CD prepares one for an `argocd-cm` script (see [`ARGOCD_GLOBALS`]).
/// Reading a global Argo CD does not provide is an error here, not `nil` as there: a script
/// that reaches one (even behind `if os then`) works differently in Argo CD than it was
/// tested.
fn sandbox(obj: &Json, params: &Json) -> mlua::Result<Lua> {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default())?;
    let globals = lua.globals();
    // PUC Lua 5.1's base library also registers `coroutine` and `gcinfo`; gopher-lua's does
    // not, and it has `_GOPHER_LUA_VERSION` and `_printregs`.
    for name in ["coroutine", "gcinfo", "string", "math", "io", "os", "debug"] {
        globals.set(name, Value::Nil)?;
    }
    globals.set("_GOPHER_LUA_VERSION", "GopherLua 0.1")?;
    globals.set("_printregs", lua.create_function(|_, ()| Ok(()))?)?;
    // `require` finds a module in `package.preload` or as a Lua file, never a C library.
    let package: Table = globals.get("package")?;
    package.set("cpath", "")?;
    package.set("loadlib", Value::Nil)?;
    // gopher-lua has two loaders (preload, Lua file); PUC Lua's third and fourth load C.
    let loaders: Table = package.get("loaders")?;
    for i in (3..=loaders.raw_len()).rev() {
        loaders.raw_set(i, Value::Nil)?;
    }
    // gopher-lua's table library has no `foreach`, `foreachi` or `setn`.
    let table: Table = globals.get("table")?;
    for name in ["foreach", "foreachi", "setn"] {
        table.set(name, Value::Nil)?;
    }
    let loaded: Table = package.get("loaded")?;
    for name in ["coroutine", "string", "math", "io", "os", "debug"] {
        loaded.set(name, Value::Nil)?;
    }
    let os = safe_os(&lua)?;
    let preload: Table = package.get("preload")?;
    preload.set(
        "os",
        lua.create_function(move |_, _: mlua::MultiValue| Ok(os.clone()))?,
    )?;
    globals.set("obj", to_lua(&lua, obj)?)?;
    globals.set("actionParams", to_lua(&lua, params)?)?;
    let strict = lua.create_table()?;
    strict.set(
        "__index",
        lua.create_function(|_, (_, name): (Value, Value)| -> mlua::Result<Value> {
            let name = match &name {
                Value::String(s) => s.to_string_lossy(),
                other => format!("{other:?}"),
            };
            Err(mlua::Error::runtime(format!(
                "global '{name}' is not in Argo CD's Lua sandbox (base, package and table \
                 libraries; os only as `local os = require(\"os\")`, with date and time)"
            )))
        })?,
    )?;
    globals.set_metatable(Some(strict))?;
    let started = Instant::now();
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(1000),
        move |_, _| {
            if started.elapsed() > BUDGET {
                Err(mlua::Error::runtime(
                    "context deadline exceeded: the script ran longer than the 1s Argo CD allows",
                ))
            } else {
                Ok(VmState::Continue)
            }
        },
    )?;
    Ok(lua)
}

/// JSON to Lua with `null` as `nil`: mlua's default turns `null` into a light userdata that is
/// truthy and `~= nil`, which is not what gopher-lua (and so Argo CD) gives a script.
fn to_lua(lua: &Lua, value: &Json) -> mlua::Result<Value> {
    lua.to_value_with(
        value,
        mlua::serde::SerializeOptions::new()
            .serialize_none_to_null(false)
            .serialize_unit_to_null(false)
            // gopher-lua's tables have no metatable; mlua marks arrays with one by default.
            .set_array_metatable(false),
    )
}

/// `os.time` and `os.date`, the two functions Argo CD's `oslib_safe.go` keeps.
fn safe_os(lua: &Lua) -> mlua::Result<Table> {
    let os = lua.create_table()?;
    os.set(
        "time",
        lua.create_function(|_, fields: Option<Table>| {
            let Some(fields) = fields else {
                return Ok(jiff::Timestamp::now().as_second() as f64);
            };
            let field = |name: &str, default: i64| -> mlua::Result<i64> {
                Ok(fields
                    .get::<Option<f64>>(name)?
                    .map_or(default, |v| v as i64))
            };
            let date = jiff::civil::DateTime::new(
                field("year", -1)? as i16,
                field("month", -1)? as i8,
                field("day", -1)? as i8,
                field("hour", 12)? as i8,
                field("min", 0)? as i8,
                field("sec", 0)? as i8,
                0,
            )
            .map_err(mlua::Error::runtime)?;
            let zoned = date
                .to_zoned(jiff::tz::TimeZone::system())
                .map_err(mlua::Error::runtime)?;
            Ok(zoned.timestamp().as_second() as f64)
        })?,
    )?;
    os.set(
        "date",
        lua.create_function(|lua, (format, at): (Option<String>, Option<f64>)| {
            let mut format = format.unwrap_or_else(|| "%c".to_owned());
            let utc = format.starts_with('!');
            if utc {
                format = format.trim_start_matches('!').to_owned();
            }
            let now = match at {
                // As in gopher-lua, an explicit time is read in local time even after `!`.
                Some(seconds) => jiff::Timestamp::from_second(seconds as i64)
                    .map_err(mlua::Error::runtime)?
                    .to_zoned(jiff::tz::TimeZone::system()),
                None if utc => jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC),
                None => jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::system()),
            };
            if format.starts_with("*t") {
                let t = lua.create_table()?;
                t.set("year", now.year())?;
                t.set("month", now.month())?;
                t.set("day", now.day())?;
                t.set("hour", now.hour())?;
                t.set("min", now.minute())?;
                t.set("sec", now.second())?;
                t.set("wday", now.weekday().to_sunday_one_offset())?;
                t.set("yday", 0)?;
                t.set("isdst", false)?;
                return Ok(Value::Table(t));
            }
            Ok(Value::String(lua.create_string(strftime(&now, &format))?))
        })?,
    )?;
    Ok(os)
}

/// The `%` directives gopher-lua's `os.date` knows; others are kept as written.
fn strftime(at: &jiff::Zoned, format: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(flag) = chars.next() else {
            out.push('%');
            break;
        };
        let directive = match flag {
            '%' => {
                out.push('%');
                continue;
            }
            'w' => {
                let _ = write!(out, "{}", at.weekday().to_sunday_zero_offset());
                continue;
            }
            'c' => "%d %b %y %H:%M %Z",
            'x' => "%H/%M/%S",
            'X' => "%H:%M:%S",
            'F' => "%Y-%m-%d",
            'a' | 'A' | 'b' | 'B' | 'd' | 'H' | 'I' | 'm' | 'M' | 'p' | 'P' | 'S' | 'y' | 'Y'
            | 'z' | 'Z' => {
                out.push_str(&at.strftime(&format!("%{flag}")).to_string());
                continue;
            }
            other => {
                out.push('%');
                out.push(other);
                continue;
            }
        };
        out.push_str(&at.strftime(directive).to_string());
    }
    out
}

/// Lua to JSON the way Argo CD encodes a script's result: a table with keys 1..n is an array,
/// any other table an object.
fn to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => json!(*i),
        Value::Number(n) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(*n as i64)
            } else {
                json!(*n)
            }
        }
        Value::String(s) => Json::String(s.to_str().map_err(|e| e.to_string())?.to_owned()),
        Value::Table(t) => {
            let mut entries = Vec::new();
            for pair in t.clone().pairs::<Value, Value>() {
                entries.push(pair.map_err(|e| e.to_string())?);
            }
            let n = entries.len();
            let is_array = n > 0
                && entries.iter().all(|(k, _)| match k {
                    Value::Integer(i) => *i >= 1 && (*i as usize) <= n,
                    Value::Number(f) => f.fract() == 0.0 && *f >= 1.0 && (*f as usize) <= n,
                    _ => false,
                });
            if is_array {
                let mut items = vec![Json::Null; n];
                for (k, v) in &entries {
                    let index = match k {
                        Value::Integer(i) => *i as usize,
                        Value::Number(f) => *f as usize,
                        _ => unreachable!(),
                    };
                    items[index - 1] = to_json(v)?;
                }
                Json::Array(items)
            } else {
                let mut map = Map::new();
                for (k, v) in &entries {
                    let key = match to_json(k)? {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    map.insert(key, to_json(v)?);
                }
                Json::Object(map)
            }
        }
        other => return Err(format!("a script returned a {}", other.type_name())),
    })
}

/// Runs `script` in the sandbox; its return value as JSON, or the Lua error.
fn run(script: &str, name: &str, obj: &Json, params: Option<&Json>) -> Result<Json, String> {
    // Argo CD sets `actionParams` for every script: the action's parameters as strings, or an
    // empty table.
    let empty = json!({});
    let lua = sandbox(obj, params.unwrap_or(&empty)).map_err(|e| format!("sandbox: {e}"))?;
    let value: Value = lua
        .load(script)
        .set_name(format!("@{name}"))
        .eval()
        .map_err(|e| e.to_string())?;
    match value {
        Value::Table(_) => to_json(&value),
        other => Err(format!(
            "expect table output from Lua script, not {}",
            other.type_name()
        )),
    }
}

/// A health script's result, as Argo CD reads it.
fn health(script: &str, name: &str, obj: &Json) -> Result<(String, String), String> {
    let result = run(script, name, obj, None)?;
    let status = result["status"].as_str().unwrap_or_default().to_owned();
    let message = result["message"].as_str().unwrap_or_default().to_owned();
    if !HEALTH_STATUSES.contains(&status.as_str()) {
        return Ok((
            "Unknown".into(),
            "Lua returned an invalid health status".into(),
        ));
    }
    Ok((status, message))
}

// --- comparing ------------------------------------------------------------------------------------

/// Whether `actual` has everything `expected` has (Argo CD's action tests diff the expected file
/// against the result: fields in the expected file must match, other live fields are ignored).
/// Differences go to `out` as JSON pointers.
fn subset(expected: &Json, actual: &Json, at: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => {
            for (key, value) in e {
                let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match a.get(key) {
                    Some(found) => subset(value, found, &path, out),
                    None if value.is_null() => {}
                    None => out.push(format!("{path}: missing (expected {value})")),
                }
            }
        }
        (Json::Array(e), Json::Array(a)) if e.len() == a.len() => {
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                subset(x, y, &format!("{at}/{i}"), out);
            }
        }
        (Json::Number(e), Json::Number(a)) if e.as_f64() == a.as_f64() => {}
        // Lua cannot tell an empty object from an empty array (Argo CD cleans this up).
        (Json::Object(e), Json::Array(a)) | (Json::Array(a), Json::Object(e))
            if e.is_empty() && a.is_empty() => {}
        _ if expected == actual => {}
        _ => out.push(format!("{at}: expected {expected}, got {actual}")),
    }
}

/// Where `a` and `b` differ, as JSON pointers to the leaves (an absent object counts as empty).
fn differences(a: &Json, b: &Json, at: &str, out: &mut Vec<String>) {
    let empty = Json::Object(Map::new());
    let (a, b) = match (a, b) {
        (Json::Null, Json::Object(_)) => (&empty, b),
        (Json::Object(_), Json::Null) => (a, &empty),
        _ => (a, b),
    };
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                differences(
                    x.get(key).unwrap_or(&Json::Null),
                    y.get(key).unwrap_or(&Json::Null),
                    &path,
                    out,
                );
            }
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{at}/{i}"), out);
            }
        }
        (Json::Number(p), Json::Number(q)) if p.as_f64() == q.as_f64() => {}
        // Lua cannot tell an empty object from an empty array.
        (Json::Object(e), Json::Array(a)) | (Json::Array(a), Json::Object(e))
            if e.is_empty() && a.is_empty() => {}
        _ if a == b => {}
        _ => out.push(at.to_owned()),
    }
}

/// Whether `text` is a UTC time to the second, `2026-11-26T04:30:00Z`, as the actions write.
fn utc_seconds(text: &str) -> Option<jiff::Timestamp> {
    let shaped = text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T';
    shaped.then(|| text.parse().ok()).flatten()
}

/// Replaces a run-time annotation the action set by the expected value, if both are UTC times
/// to the second and the action's is within a few seconds of `now`.
fn normalise(input: &Json, expected: &Json, actual: &mut Json, now: jiff::Timestamp) {
    for key in RUN_TIME_ANNOTATIONS {
        let pointer = format!("/metadata/annotations/{}", key.replace('/', "~1"));
        let (Some(want), Some(got)) = (expected.pointer(&pointer), actual.pointer(&pointer)) else {
            continue;
        };
        if input.pointer(&pointer) == Some(got)
            || utc_seconds(want.as_str().unwrap_or("")).is_none()
        {
            continue;
        }
        let close = got
            .as_str()
            .and_then(utc_seconds)
            .is_some_and(|t| (t - now).get_seconds().abs() <= 5);
        if close {
            let want = want.clone();
            *actual.pointer_mut(&pointer).expect("present") = want;
        }
    }
}

// --- the test files ---------------------------------------------------------------------------------

/// One `health_test.yaml` entry.
struct HealthCase {
    kind: String,
    input: PathBuf,
    status: String,
    message: String,
}

fn health_cases(kind: &str) -> Vec<HealthCase> {
    let dir = group_dir().join(kind);
    let tests = read_yaml(&dir.join("health_test.yaml"));
    tests["tests"]
        .as_array()
        .unwrap_or_else(|| panic!("{kind}/health_test.yaml: no tests"))
        .iter()
        .map(|t| HealthCase {
            kind: kind.to_owned(),
            input: dir.join(t["inputPath"].as_str().expect("inputPath")),
            status: t["healthStatus"]["status"]
                .as_str()
                .expect("healthStatus.status")
                .to_owned(),
            message: t["healthStatus"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}

/// Runs one health case; `Err` says how it failed.
fn check_health(case: &HealthCase) -> Result<(), String> {
    let script_path = group_dir().join(&case.kind).join("health.lua");
    let obj = read_yaml(&case.input);
    let (status, message) = health(
        &read(&script_path),
        &format!("{}/health.lua", case.kind),
        &obj,
    )
    .map_err(|e| format!("{}: script error: {e}", case.input.display()))?;
    if status != case.status || message != case.message {
        return Err(format!(
            "{}:\n  expected {} {:?}\n  got      {status} {message:?}",
            case.input.display(),
            case.status,
            case.message
        ));
    }
    Ok(())
}

/// The action scripts of a kind: discovery and each definition, by name.
struct Actions {
    discovery: String,
    definitions: BTreeMap<String, String>,
}

fn actions(kind: &str) -> Option<Actions> {
    let dir = group_dir().join(kind).join("actions");
    if !dir.is_dir() {
        return None;
    }
    let mut definitions = BTreeMap::new();
    for entry in std::fs::read_dir(&dir)
        .expect("actions/")
        .filter_map(|e| e.ok())
    {
        let script = entry.path().join("action.lua");
        if script.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            definitions.insert(name, read(&script));
        }
    }
    Some(Actions {
        discovery: read(&dir.join("discovery.lua")),
        definitions,
    })
}

/// The actions discovery offers for `obj`: name to fields (`disabled`, `iconClass`, ...).
fn discover(kind: &str, scripts: &Actions, obj: &Json) -> Result<BTreeMap<String, Json>, String> {
    let result = run(
        &scripts.discovery,
        &format!("{kind}/actions/discovery.lua"),
        obj,
        None,
    )?;
    let mut found = BTreeMap::new();
    match result {
        Json::Object(map) => {
            for (name, fields) in map {
                let fields = match fields {
                    Json::Object(f) => Json::Object(f),
                    // An empty table: an action with default fields.
                    _ => json!({}),
                };
                found.insert(name, fields);
            }
        }
        Json::Array(items) if items.is_empty() => {}
        other => return Err(format!("discovery returned {other}")),
    }
    Ok(found)
}

/// Checks a discovery result against the expected list: the same action names, and every
/// field the expected entry gives (`disabled` defaults to false, as in Argo CD).
fn check_discovery(found: &BTreeMap<String, Json>, expected: &Json) -> Result<(), String> {
    let expected = expected.as_array().ok_or("result is not a list")?;
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for entry in expected {
        let name = entry["name"].as_str().ok_or("an entry has no name")?;
        names.push(name.to_owned());
        let Some(fields) = found.get(name) else {
            problems.push(format!("{name}: not offered"));
            continue;
        };
        let disabled = fields["disabled"].as_bool().unwrap_or(false);
        let want_disabled = entry["disabled"].as_bool().unwrap_or(false);
        if disabled != want_disabled {
            problems.push(format!(
                "{name}: disabled is {disabled}, expected {want_disabled}"
            ));
        }
        for (key, value) in entry.as_object().into_iter().flatten() {
            if key != "name" && key != "disabled" && fields.get(key) != Some(value) {
                problems.push(format!(
                    "{name}: {key} is {}, expected {value}",
                    fields.get(key).unwrap_or(&Json::Null)
                ));
            }
        }
    }
    for name in found.keys() {
        if !names.contains(name) {
            problems.push(format!("{name}: offered but not expected"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs one action test entry of `kind`; `Err` says how it failed.
fn check_action(kind: &str, scripts: &Actions, test: &Json) -> Result<(), String> {
    let dir = group_dir().join(kind).join("actions");
    let action = test["action"].as_str().ok_or("no action")?;
    let input_path = dir.join(test["inputPath"].as_str().ok_or("no inputPath")?);
    let label = format!("{action} on {}", input_path.display());
    let script = scripts
        .definitions
        .get(action)
        .ok_or_else(|| format!("{label}: no actions/{action}/action.lua"))?;
    let input = read_yaml(&input_path);
    let params = test.get("parameters").map(|p| {
        // Argo CD passes parameters as a table of strings.
        let map: Map<String, Json> = p
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), Json::String(text))
            })
            .collect();
        Json::Object(map)
    });
    let now = jiff::Timestamp::now();
    let result = run(
        script,
        &format!("{kind}/actions/{action}/action.lua"),
        &input,
        params.as_ref(),
    );
    if let Some(message) = test["expectedErrorMessage"].as_str() {
        return match result {
            Err(error) if error.contains(message) => Ok(()),
            Err(error) => Err(format!("{label}: error {error:?} does not say {message:?}")),
            Ok(_) => Err(format!(
                "{label}: succeeded, expected the error {message:?}"
            )),
        };
    }
    let mut output = result.map_err(|e| format!("{label}: script error: {e}"))?;
    let expected_path = dir.join(
        test["expectedOutputPath"]
            .as_str()
            .ok_or("no expectedOutputPath")?,
    );
    let expected = read_yaml(&expected_path);
    normalise(&input, &expected, &mut output, now);
    let mut problems = Vec::new();
    subset(&expected, &output, "", &mut problems);
    // Our actions only ever add a request annotation: nothing Git holds changes.
    let mut changed = Vec::new();
    differences(&input, &output, "", &mut changed);
    for path in changed {
        let allowed = REQUEST_ANNOTATIONS
            .iter()
            .any(|key| path == format!("/metadata/annotations/{}", key.replace('/', "~1")));
        if !allowed {
            problems.push(format!(
                "{path}: changed by the action, which may only set a request annotation"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{label} (expected {}):\n  {}",
            expected_path.display(),
            problems.join("\n  ")
        ))
    }
}

fn action_tests(kind: &str) -> Option<Json> {
    let path = group_dir().join(kind).join("actions/action_test.yaml");
    path.is_file().then(|| read_yaml(&path))
}

// --- the argocd-cm snippet ----------------------------------------------------------------------------

/// `text` as the body of a YAML literal block scalar indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    assert!(
        !text.starts_with(' ') && text.ends_with('\n') && !text.ends_with("\n\n"),
        "a script must not start with a space and must end with exactly one newline"
    );
    let pad = " ".repeat(indent);
    text.lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("{pad}{line}\n")
            }
        })
        .collect()
}

/// The `argocd-cm` ConfigMap (data keys only) the tree under `deploy/argocd/` stands for.
fn snippet() -> String {
    let mut out = String::from(
        "# Generated from deploy/argocd/ops.runbook.dev/ by `make argocd`: do not edit by hand.\n\
         #\n\
         # Argo CD health checks and resource actions for runbook-operator's kinds. Merge these\n\
         # keys into the argocd-cm ConfigMap of your Argo CD install: with kustomize, add this\n\
         # file as a patch of argocd-cm; with the argo-cd Helm chart, copy the data entries\n\
         # under `configs.cm`. See \"GitOps with Argo CD\" in the README.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n\
         \x20 name: argocd-cm\n\
         \x20 namespace: argocd\n\
         \x20 labels:\n\
         \x20   app.kubernetes.io/name: argocd-cm\n\
         \x20   app.kubernetes.io/part-of: argocd\n\
         data:\n",
    );
    for kind in kinds() {
        let dir = group_dir().join(&kind);
        let _ = writeln!(out, "  resource.customizations.health.{GROUP}_{kind}: |");
        out.push_str(&block(&read(&dir.join("health.lua")), 4));
        if let Some(actions) = actions(&kind) {
            let _ = writeln!(out, "  resource.customizations.actions.{GROUP}_{kind}: |");
            out.push_str("    discovery.lua: |\n");
            out.push_str(&block(&actions.discovery, 6));
            out.push_str("    definitions:\n");
            for (name, script) in &actions.definitions {
                let _ = writeln!(out, "    - name: {name}");
                out.push_str("      action.lua: |\n");
                out.push_str(&block(script, 8));
            }
        }
    }
    out
}

// --- tests -----------------------------------------------------------------------------------------

#[test]
fn every_kind_has_a_tested_health_script() {
    let found = kinds();
    assert_eq!(
        found,
        [
            "BackupPolicy",
            "BlueGreenRelease",
            "MaintenanceWindow",
            "Runbook",
            "RunbookRun"
        ],
        "one folder per kind under deploy/argocd/ops.runbook.dev"
    );
    for kind in &found {
        let dir = group_dir().join(kind);
        assert!(dir.join("health.lua").is_file(), "{kind}/health.lua");
        assert!(
            dir.join("health_test.yaml").is_file(),
            "{kind}/health_test.yaml"
        );
        // Every fixture is used by a test, so none rots unseen.
        let mut used: Vec<PathBuf> = health_cases(kind).into_iter().map(|c| c.input).collect();
        if let Some(tests) = action_tests(kind) {
            let adir = dir.join("actions");
            for list in ["discoveryTests", "actionTests"] {
                for t in tests[list].as_array().into_iter().flatten() {
                    for key in ["inputPath", "expectedOutputPath"] {
                        if let Some(p) = t[key].as_str() {
                            used.push(adir.join(p));
                        }
                    }
                }
            }
        }
        for sub in ["testdata", "actions/testdata"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                assert!(
                    used.contains(&entry.path()),
                    "{} is not used by any test",
                    entry.path().display()
                );
            }
        }
    }
}

#[test]
fn health_scripts_give_the_expected_health() {
    let mut failures = Vec::new();
    let mut passed = 0;
    for kind in kinds() {
        for case in health_cases(&kind) {
            match check_health(&case) {
                Ok(()) => passed += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    println!("argocd health: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 40, "only {passed} health cases ran");
}

#[test]
fn actions_are_discovered_and_set_only_request_annotations() {
    let mut failures = Vec::new();
    let (mut discovery, mut action) = (0, 0);
    for kind in kinds() {
        let (Some(scripts), Some(tests)) = (actions(&kind), action_tests(&kind)) else {
            continue;
        };
        let dir = group_dir().join(&kind).join("actions");
        for t in tests["discoveryTests"].as_array().into_iter().flatten() {
            let input = dir.join(t["inputPath"].as_str().expect("inputPath"));
            let result = discover(&kind, &scripts, &read_yaml(&input))
                .and_then(|found| check_discovery(&found, &t["result"]));
            match result {
                Ok(()) => discovery += 1,
                Err(e) => failures.push(format!("discovery on {}: {e}", input.display())),
            }
        }
        for t in tests["actionTests"].as_array().into_iter().flatten() {
            match check_action(&kind, &scripts, t) {
                Ok(()) => action += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    println!(
        "argocd actions: {discovery} discovery and {action} action cases passed, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(discovery >= 15 && action >= 6, "too few action cases ran");
}

#[test]
fn every_action_discovery_offers_has_a_script_and_the_reverse() {
    for kind in kinds() {
        let Some(scripts) = actions(&kind) else {
            continue;
        };
        let names: Vec<&String> = scripts.definitions.keys().collect();
        for case in health_cases(&kind) {
            let found = discover(&kind, &scripts, &read_yaml(&case.input))
                .unwrap_or_else(|e| panic!("{}: {e}", case.input.display()));
            let offered: Vec<&String> = found.keys().collect();
            assert_eq!(offered, names, "{kind}: discovery and actions/ disagree");
        }
    }
}

#[test]
fn health_scripts_survive_sparse_objects() {
    let sparse = [
        json!({"apiVersion": "ops.runbook.dev/v1alpha1", "kind": "X", "metadata": {"name": "x"}}),
        json!({"metadata": {"name": "x", "generation": 3}, "spec": {}, "status": {}}),
        json!({"metadata": {"name": "x"}, "status": {"conditions": [], "phase": "Unheard"}}),
        json!({"metadata": {"name": "x", "generation": 1},
               "status": {"observedGeneration": 1, "conditions": [{"type": "Stalled", "status": "True"}]}}),
        json!({"metadata": {"name": "x", "annotations": {}}, "spec": null, "status": null}),
        json!({"metadata": {"name": "x"}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
               "phase": "Ready"}}),
        json!({"metadata": {"name": "x"}, "status": {"phase": "Scheduled",
               "lastWindow": {"result": "Failed"}, "currentWindow": {"result": "Failed"}}}),
        json!({"metadata": {"name": "x"}, "status": {"phase": "Healthy", "replicas": 2}}),
        json!({"metadata": {"name": "x"}, "status": {"phase": "ScalingDown", "history": [{}]}}),
        json!({"metadata": {"name": "x"}, "status": {"phase": "Running",
               "conditions": [{"type": "BackupFresh", "status": "True"}, {"type": "LastBackupSucceeded", "status": "False"}]}}),
    ];
    for kind in kinds() {
        let script = read(&group_dir().join(&kind).join("health.lua"));
        for obj in &sparse {
            let result = health(&script, &kind, obj);
            assert!(result.is_ok(), "{kind} on {obj}: {result:?}");
        }
        if let Some(scripts) = actions(&kind) {
            for (i, obj) in sparse.iter().enumerate() {
                let found = discover(&kind, &scripts, obj);
                assert!(found.is_ok(), "{kind} discovery on {obj}: {found:?}");
                // Without a status to go by, nothing is offered.
                if i < 5 {
                    assert!(
                        found
                            .as_ref()
                            .is_ok_and(|f| f.values().all(|a| a["disabled"] == Json::Bool(true))),
                        "{kind} discovery on {obj}: {found:?} (every action must be disabled)"
                    );
                }
            }
        }
    }
}

#[test]
fn the_sandbox_has_no_string_math_or_io_library() {
    let obj = json!({"metadata": {"name": "x"}});
    let outside = "is not in Argo CD's Lua sandbox";
    for (script, error) in [
        (
            r#"local i = string.find("abc", "b"); return {status = "Healthy"}"#,
            outside,
        ),
        // No string library, no string metatable: methods fail too (gopher-lua: "attempt to
        // index a non-table object(string) with key 'upper'").
        (
            r#"local s = ("abc"):upper(); return {status = "Healthy"}"#,
            "attempt to index",
        ),
        (
            r#"local s = obj.metadata.name:sub(1, 1); return {status = "Healthy"}"#,
            "attempt to index",
        ),
        (
            r#"return {status = "Healthy", message = "" .. math.floor(1.5)}"#,
            outside,
        ),
        (r#"io.write("x"); return {status = "Healthy"}"#, outside),
        // No global os at all, not even the safe one.
        (r#"return {status = os.date("!%Y")}"#, outside),
        (r#"os.exit(1)"#, outside),
        (r#"require("os").exit(1)"#, "attempt to call field 'exit'"),
        (
            r#"require("os").execute("true")"#,
            "attempt to call field 'execute'",
        ),
        (r#"require("io")"#, "module 'io' not found"),
        (r#"require("string")"#, "module 'string' not found"),
        (r#"coroutine.create(function() end)"#, outside),
        (
            r#"table.foreach({}, print)"#,
            "attempt to call field 'foreach'",
        ),
    ] {
        let result = run(script, "negative.lua", &obj, None);
        assert!(
            result.as_ref().is_err_and(|e| e.contains(error)),
            "{script}: expected an error saying {error:?}, got {result:?}"
        );
    }
    // What the sandbox does offer: string concatenation, length and comparison need no library.
    let ok = run(
        r#"local os = require("os")
           local t = {}
           table.insert(t, "a"); table.insert(t, "b")
           return {status = "Healthy", message = table.concat(t, ",") .. " " .. tostring(os.time() > 0)
             .. " " .. os.date("!%Y") .. " " .. type(pairs) .. " " .. _VERSION .. " " .. #obj.metadata.name
             .. " " .. tostring("a" < "b") .. " " .. tostring(tonumber("12") + 1)}"#,
        "positive.lua",
        &obj,
        None,
    )
    .expect("base, table and safe os work");
    let year = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .year();
    assert_eq!(
        ok["message"],
        json!(format!("a,b true {year} function Lua 5.1 1 true 13"))
    );
}

/// The names a Lua expression `expr` (a table) holds, sorted.
fn keys_of(expr: &str) -> Vec<String> {
    let script = format!(
        "local names = {{}}\nfor k in pairs({expr}) do table.insert(names, tostring(k)) end\n\
         table.sort(names)\nreturn {{names = names}}\n"
    );
    let result = run(&script, "keys.lua", &json!({"metadata": {}}), None).expect("runs");
    result["names"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n.as_str().expect("a name").to_owned())
        .collect()
}

/// Exactly the globals, `table` functions and `require`-able modules of Argo CD's Lua state.
#[test]
fn the_sandbox_has_exactly_argo_cds_globals() {
    let mut expected: Vec<String> = ARGOCD_GLOBALS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(keys_of("_G"), expected);
    assert_eq!(
        keys_of("table"),
        ["concat", "getn", "insert", "maxn", "remove", "sort"]
    );
    assert_eq!(keys_of("package.preload"), ["os"]);
    assert_eq!(keys_of("require('os')"), ["date", "time"]);
    assert_eq!(keys_of("package.loaded"), ["_G", "package", "table"]);
    assert_eq!(keys_of("actionParams"), Vec::<String>::new());
}

/// Scripts that reach a global Argo CD does not provide fail the action check: the old
/// `run-now` (global `os`), one that looks at `string` behind a guard, and a string method.
#[test]
fn a_script_reaching_a_global_argo_cd_lacks_fails() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argocd");
    let kind = "Runbook";
    let good = actions(kind).expect("Runbook actions");
    let test = json!({
        "action": "run-now",
        "inputPath": "testdata/ready.yaml",
        "expectedOutputPath": "testdata/ready-run-now.yaml",
    });
    check_action(kind, &good, &test).expect("the deployed run-now passes");
    for (fixture, error) in [
        (
            "global-os-action.lua",
            "global 'os' is not in Argo CD's Lua sandbox",
        ),
        (
            "guarded-global-action.lua",
            "global 'string' is not in Argo CD's Lua sandbox",
        ),
        ("string-method-action.lua", "attempt to index"),
    ] {
        let bad = Actions {
            discovery: good.discovery.clone(),
            definitions: BTreeMap::from([("run-now".to_owned(), read(&fixtures.join(fixture)))]),
        };
        let result = check_action(kind, &bad, &test);
        assert!(
            result.as_ref().is_err_and(|e| e.contains(error)),
            "{fixture}: expected an error saying {error:?}, got {result:?}"
        );
    }
}

/// Argo CD hands an action its parameters as strings in `actionParams`, and every other
/// script an empty `actionParams`.
#[test]
fn action_params_are_strings_as_argo_cd_passes_them() {
    let obj = json!({"metadata": {"name": "x"}});
    let result = run(
        r#"return {status = type(actionParams.replicas) .. " " .. actionParams.replicas}"#,
        "params.lua",
        &obj,
        Some(&json!({"replicas": "3"})),
    )
    .expect("runs");
    assert_eq!(result["status"], json!("string 3"));
    let result = run(
        r#"return {status = type(actionParams) .. " " .. tostring(next(actionParams) == nil)}"#,
        "params.lua",
        &obj,
        None,
    )
    .expect("runs");
    assert_eq!(result["status"], json!("table true"));
}

#[test]
fn a_script_is_stopped_after_its_one_second_budget() {
    let obj = json!({"metadata": {"name": "x"}});
    for script in [
        "while true do end",
        "local n = 0; for i = 1, 1e15 do n = n + i end; return {status = 'Healthy'}",
        "local function f() return f() end; return f()",
    ] {
        let started = Instant::now();
        let result = run(script, "endless.lua", &obj, None);
        let took = started.elapsed();
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.contains("deadline exceeded")),
            "{script}: {result:?}"
        );
        assert!(
            took >= BUDGET && took < BUDGET * 3,
            "{script}: stopped after {took:?}"
        );
    }
}

#[test]
fn json_null_is_nil_to_a_script() {
    let obj =
        json!({"metadata": {"name": "x", "deletionTimestamp": null}, "status": {"phase": null}});
    let result = run(
        r#"return {status = "Healthy", message = tostring(obj.metadata.deletionTimestamp == nil)
           .. " " .. tostring(obj.status.phase == nil) .. " " .. type(obj.status.phase)}"#,
        "null.lua",
        &obj,
        None,
    )
    .expect("runs");
    assert_eq!(result["message"], json!("true true nil"));
}

#[test]
fn run_time_dates_are_utc_seconds() {
    let obj = json!({"metadata": {"name": "x"}});
    let before = jiff::Timestamp::now();
    let result = run(
        r#"local os = require("os"); return {status = os.date("!%Y-%m-%dT%H:%M:%SZ")}"#,
        "date.lua",
        &obj,
        None,
    )
    .expect("runs");
    let text = result["status"].as_str().expect("a string");
    let at: jiff::Timestamp = text.parse().expect("RFC 3339");
    assert_eq!(text.len(), 20, "{text}");
    assert!((at - before).get_seconds().abs() <= 2, "{text}");
}

/// The checks must be able to fail: a wrong expected health, a wrong expected action output, a
/// wrong discovery result and an action that edits the spec are all reported.
#[test]
fn wrong_expectations_fail() {
    let kind = "BlueGreenRelease";
    let dir = group_dir().join(kind);
    let good = HealthCase {
        kind: kind.into(),
        input: dir.join("testdata/awaiting-promotion.yaml"),
        status: "Suspended".into(),
        message: "autoPromote is false: set the annotation ops.runbook.dev/promote: 1e7bee0979 to promote".into(),
    };
    check_health(&good).expect("the real expectation holds");
    for (status, message) in [("Healthy", good.message.as_str()), ("Suspended", "waiting")] {
        let wrong = HealthCase {
            kind: good.kind.clone(),
            input: good.input.clone(),
            status: status.into(),
            message: message.into(),
        };
        assert!(check_health(&wrong).is_err(), "{status} {message:?} passed");
    }

    let scripts = actions(kind).expect("actions");
    let promote = json!({
        "action": "promote",
        "inputPath": "testdata/awaiting-promotion.yaml",
        "expectedOutputPath": "testdata/awaiting-promotion-promoted.yaml",
    });
    check_action(kind, &scripts, &promote).expect("the real expectation holds");
    // The abort action's output is not what promote expects.
    let wrong = json!({
        "action": "abort",
        "inputPath": "testdata/awaiting-promotion.yaml",
        "expectedOutputPath": "testdata/awaiting-promotion-promoted.yaml",
    });
    let error = check_action(kind, &scripts, &wrong).expect_err("abort is not promote");
    assert!(
        error.contains("ops.runbook.dev~1promote: missing"),
        "{error}"
    );

    // An expected error that does not come.
    let no_error = json!({
        "action": "promote",
        "inputPath": "testdata/awaiting-promotion.yaml",
        "expectedErrorMessage": "no desired revision",
    });
    assert!(check_action(kind, &scripts, &no_error).is_err());

    // Discovery: a flipped `disabled`, a missing and an extra action.
    let obj = read_yaml(&dir.join("actions/testdata/awaiting-promotion.yaml"));
    let found = discover(kind, &scripts, &obj).expect("discovery runs");
    check_discovery(
        &found,
        &json!([{"name": "promote", "disabled": false}, {"name": "abort", "disabled": false}, {"name": "retry", "disabled": true}]),
    )
    .expect("the real expectation holds");
    for wrong in [
        json!([{"name": "promote", "disabled": true}, {"name": "abort", "disabled": false}]),
        json!([{"name": "promote", "disabled": false}]),
        json!([{"name": "promote"}, {"name": "abort"}, {"name": "pause"}]),
        json!([{"name": "promote", "iconClass": "fa fa-fw fa-play"}, {"name": "abort"}]),
    ] {
        assert!(check_discovery(&found, &wrong).is_err(), "{wrong} passed");
    }

    // An action that changes the spec is refused even when the expected file agrees.
    let sneaky = Actions {
        discovery: scripts.discovery.clone(),
        definitions: BTreeMap::from([(
            "promote".to_owned(),
            "obj.spec.replicas = 0\nobj.metadata.annotations = obj.metadata.annotations or {}\n\
             obj.metadata.annotations[\"ops.runbook.dev/promote\"] = obj.status.desiredRevision\nreturn obj\n"
                .to_owned(),
        )]),
    };
    let error = check_action(kind, &sneaky, &promote).expect_err("a spec change is refused");
    assert!(
        error.contains("/spec/replicas: changed by the action"),
        "{error}"
    );
    // So is an annotation other than ours, also on an object that had no annotations.
    let chatty = Actions {
        discovery: scripts.discovery.clone(),
        definitions: BTreeMap::from([(
            "promote".to_owned(),
            "obj.metadata.annotations = obj.metadata.annotations or {}\n\
             obj.metadata.annotations[\"example.com/note\"] = \"promoted\"\n\
             obj.metadata.annotations[\"ops.runbook.dev/promote\"] = obj.status.desiredRevision\nreturn obj\n"
                .to_owned(),
        )]),
    };
    let error = check_action(kind, &chatty, &promote).expect_err("a foreign annotation is refused");
    assert!(
        error.contains("/metadata/annotations/example.com~1note: changed by the action"),
        "{error}"
    );
}

#[test]
fn argocd_cm_snippet_is_generated_from_the_tree() {
    let path = root().join("argocd-cm.yaml");
    let generated = snippet();
    if std::env::var_os("UPDATE_ARGOCD_SNIPPET").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write deploy/argocd/argocd-cm.yaml");
        println!("wrote {}", path.display());
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "deploy/argocd/argocd-cm.yaml differs from the scripts under deploy/argocd/ops.runbook.dev/: \
         run `make argocd` (or UPDATE_ARGOCD_SNIPPET=1 cargo test --test argocd) and commit the result"
    );
}

/// The snippet is a valid ConfigMap whose values are exactly the scripts, in the structure
/// Argo CD reads (`discovery.lua` and `definitions[].action.lua`).
#[test]
fn argocd_cm_snippet_holds_the_scripts() {
    let cm: Json = serde_norway::from_str(&snippet()).expect("the snippet is YAML");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().expect("data");
    let mut keys = Vec::new();
    for kind in kinds() {
        let dir = group_dir().join(&kind);
        let health_key = format!("resource.customizations.health.{GROUP}_{kind}");
        assert_eq!(
            data[&health_key].as_str(),
            Some(read(&dir.join("health.lua")).as_str()),
            "{health_key}"
        );
        keys.push(health_key);
        let Some(scripts) = actions(&kind) else {
            continue;
        };
        let actions_key = format!("resource.customizations.actions.{GROUP}_{kind}");
        let value: Json = serde_norway::from_str(data[&actions_key].as_str().expect("a string"))
            .expect("the actions value is YAML");
        assert_eq!(
            value["discovery.lua"].as_str(),
            Some(scripts.discovery.as_str())
        );
        let definitions = value["definitions"].as_array().expect("definitions");
        assert_eq!(definitions.len(), scripts.definitions.len());
        for definition in definitions {
            let name = definition["name"].as_str().expect("name");
            assert_eq!(
                definition["action.lua"].as_str(),
                scripts.definitions.get(name).map(String::as_str),
                "{actions_key}: {name}"
            );
        }
        keys.push(actions_key);
    }
    let mut present: Vec<String> = data.keys().cloned().collect();
    present.sort();
    keys.sort();
    assert_eq!(present, keys);
}

// --- the demo Application -----------------------------------------------------------------------------

/// Every document of every file in examples/.
fn example_documents() -> Vec<Json> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        for doc in serde_norway::Deserializer::from_str(&read(&file)) {
            let value: Json = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

/// A field `ignoreDifferences` must cover: (API group, kind, name, JSON pointer).
type Owned = (String, String, String, String);

/// The fields of objects in `docs` that Git sets and the operator changes: the slot key of a
/// release's Service selectors, `spec.replicas` of workloads a window or a runbook step scales,
/// and the key a runbook step rotates in a Secret.
fn owned_fields(docs: &[Json]) -> Vec<Owned> {
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    };
    let group_of = |kind: &str| if kind == "CronJob" { "batch" } else { "apps" };
    let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
    let mut owned = Vec::new();
    let replicas = |kind: &str, name: &str, owned: &mut Vec<Owned>| {
        if find(kind, name).is_some_and(|d| !d["spec"]["replicas"].is_null()) {
            owned.push((
                group_of(kind).into(),
                kind.into(),
                name.into(),
                "/spec/replicas".into(),
            ));
        }
    };
    for doc in docs {
        let spec = &doc["spec"];
        match doc["kind"].as_str() {
            Some("BlueGreenRelease") => {
                let slot = spec["slotLabel"].as_str().unwrap_or("ops.runbook.dev/slot");
                for role in ["active", "preview"] {
                    // Whether or not Git sets the key: under server-side apply the selector
                    // is one atomic value, and a sync would drop a key Git does not hold.
                    if let Some(service) = spec["services"][role].as_str()
                        && find("Service", service).is_some()
                    {
                        owned.push((
                            String::new(),
                            "Service".into(),
                            service.into(),
                            format!("/spec/selector/{}", escape(slot)),
                        ));
                    }
                }
            }
            Some("MaintenanceWindow") => {
                for target in spec["targets"].as_array().into_iter().flatten() {
                    let kind = target["kind"].as_str().unwrap_or_default();
                    let names: Vec<String> = match target["name"].as_str() {
                        Some(name) => vec![name.to_owned()],
                        None => docs
                            .iter()
                            .filter(|d| d["kind"] == kind)
                            .filter(|d| {
                                target["selector"]["matchLabels"]
                                    .as_object()
                                    .into_iter()
                                    .flatten()
                                    .all(|(k, v)| d["metadata"]["labels"][k] == *v)
                            })
                            .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
                            .collect(),
                    };
                    for name in names {
                        if !target["scaleTo"].is_null() {
                            replicas(kind, &name, &mut owned);
                        }
                        let git_suspend =
                            find(kind, &name).is_some_and(|d| !d["spec"]["suspend"].is_null());
                        if !target["suspend"].is_null() && git_suspend {
                            owned.push(("batch".into(), kind.into(), name, "/spec/suspend".into()));
                        }
                    }
                }
            }
            Some("Runbook") => {
                let steps = spec["steps"].as_array().into_iter().flatten();
                for step in steps.chain(spec["finally"].as_array().into_iter().flatten()) {
                    if let Some(target) = step["scale"]["target"].as_object() {
                        let kind = target["kind"].as_str().unwrap_or_default();
                        let name = target["name"].as_str().unwrap_or_default();
                        replicas(kind, name, &mut owned);
                    }
                    if let (Some(secret), Some(key)) = (
                        step["rotateSecret"]["secret"].as_str(),
                        step["rotateSecret"]["key"].as_str(),
                    ) {
                        owned.push((
                            String::new(),
                            "Secret".into(),
                            secret.into(),
                            format!("/data/{}", escape(key)),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    owned.sort();
    owned.dedup();
    owned
}

/// What is wrong with `app` for `docs`: owned fields it does not ignore, ignore rules naming
/// nothing in `docs`, a missing RespectIgnoreDifferences.
fn application_problems(app: &Json, docs: &[Json]) -> Vec<String> {
    let rules = app["spec"]["ignoreDifferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (group, kind, name, pointer) in owned_fields(docs) {
        let covered = rules.iter().any(|r| {
            r["group"].as_str().unwrap_or_default() == group
                && r["kind"] == kind.as_str()
                && (r["name"].is_null() || r["name"] == name.as_str())
                && r["jsonPointers"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p == pointer.as_str()))
        });
        if !covered {
            problems.push(format!(
                "{kind}/{name} {pointer} is not in ignoreDifferences"
            ));
        }
    }
    for rule in &rules {
        let named = docs.iter().any(|d| {
            d["kind"] == rule["kind"]
                && (rule["name"].is_null() || d["metadata"]["name"] == rule["name"])
        });
        if !named {
            problems.push(format!(
                "ignoreDifferences names nothing in examples/: {rule}"
            ));
        }
    }
    let options = app["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !options.contains(&json!("RespectIgnoreDifferences=true")) {
        problems.push("syncOptions lacks RespectIgnoreDifferences=true".into());
    }
    problems
}

#[test]
fn demo_application_ignores_what_the_operator_changes_in_the_examples() {
    let app = read_yaml(&root().join("application-demo.yaml"));
    assert_eq!(app["kind"], "Application");
    assert_eq!(app["spec"]["source"]["path"], "examples");
    assert_eq!(app["spec"]["destination"]["namespace"], "demo");
    let docs = example_documents();
    let owned = owned_fields(&docs);
    println!("fields the operator changes in examples/: {owned:?}");
    assert!(
        owned.iter().any(|o| o.3.starts_with("/spec/selector/"))
            && owned.iter().any(|o| o.3 == "/spec/replicas"),
        "examples/ no longer has a switched selector or a scaled workload: {owned:?}"
    );
    let problems = application_problems(&app, &docs);
    assert!(
        problems.is_empty(),
        "deploy/argocd/application-demo.yaml:\n{}",
        problems.join("\n")
    );

    // The check can fail: without the slot key rule, or without RespectIgnoreDifferences.
    let mut without = app.clone();
    without["spec"]["ignoreDifferences"]
        .as_array_mut()
        .expect("rules")
        .retain(|r| r["name"] != "storefront");
    assert!(!application_problems(&without, &docs).is_empty());
    let mut without = app.clone();
    without["spec"]["syncPolicy"]["syncOptions"] = json!(["CreateNamespace=true"]);
    assert!(!application_problems(&without, &docs).is_empty());
}
