//! Parsing: YAML or JSON text → a validated [`Config`]. The text is refused before it is parsed
//! when it is too large or too deep; then it is checked against the schema, then the references
//! between entries; every violation is reported at once, none quoting a value from the file.

use super::{routes, Config, ConfigError, MAX_CONFIG_BYTES, MAX_DEPTH, MAX_QUOTED_CHARS, SCHEMA};

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the offending value (`""` for the root).
    pub pointer: String,
    /// What kind of value is there (`a string of 7 characters`), never the value itself: the
    /// file may not be a config at all (a credentials file behind a symlink).
    pub value: String,
    /// The rule that failed, as the validator words it, with the value in it cut and redacted
    /// the same way.
    pub rule: String,
}

pub(super) fn render_violations(v: &[Violation]) -> String {
    v.iter()
        .map(|v| {
            format!("  - at `{}`: {} (found {})", if v.pointer.is_empty() { "/" } else { &v.pointer }, v.rule, v.value)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn validator() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        // The schema is ours and compiled in; a failure here is a build defect caught by tests.
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).expect("config schema is valid JSON");
        jsonschema::validator_for(&schema).expect("config schema compiles")
    })
}

impl Config {
    /// Parses and validates a config from `text`; `source_name` names it in errors (a path or
    /// `base branch main:.github/agentctl.yml`).
    ///
    /// Refused before parsing: text over [`MAX_CONFIG_BYTES`], nesting deeper than
    /// [`MAX_DEPTH`]. Refused while parsing: duplicate keys (named), non-string keys, `.nan`
    /// and `.inf` ("not a finite number"). Every value quoted in an error is redacted
    /// ([`Redactor::new`](crate::redact::Redactor::new)'s token patterns) and cut at
    /// [`MAX_QUOTED_CHARS`].
    pub fn from_text(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { source_name: source_name.into(), limit: MAX_CONFIG_BYTES });
        }
        if let Some(line) = nesting_exceeds(text, MAX_DEPTH) {
            return Err(ConfigError::TooDeep { source_name: source_name.into(), line, limit: MAX_DEPTH });
        }
        let syntax =
            |message: String| ConfigError::Syntax { source_name: source_name.into(), message: scrub(&message, 300) };
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::json!({})
        } else {
            let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?;
            yaml_to_json(yaml, &mut String::new()).map_err(syntax)?
        };
        // An empty YAML document parses as null: treat it as an empty config.
        let value = if value.is_null() { serde_json::json!({}) } else { value };
        let violations = validate(&value);
        if !violations.is_empty() {
            return Err(ConfigError::Invalid { source_name: source_name.into(), violations });
        }
        let config: Config = serde_json::from_value(value).map_err(|e| syntax(e.to_string()))?;
        let mut violations = routes::check_references(&config);
        // A PostgreSQL `state` URL: checked here so `config validate` catches a password in the
        // committed file; the URL itself is never quoted (it may hold one).
        if let Some(url) = config.state.as_deref().and_then(|p| p.to_str()).filter(|u| crate::store::is_postgres_url(u))
        {
            if let Err(e) = crate::store::check_url(url, crate::store::StateSource::Config) {
                violations.push(Violation {
                    pointer: "/state".into(),
                    value: "(a PostgreSQL URL, not shown)".into(),
                    rule: e.to_string().replace('\n', " "),
                });
            }
        }
        // A string `fix.verify` is split by POSIX quoting (`edit::verify::argv`): one whose quotes
        // do not close has no words to run. Not quoted back (config values never are).
        if let (Some(super::VerifyCommand::Line(line)), false) = (&config.fix.verify, config.fix.verify_shell) {
            if shlex::split(line).is_none() {
                violations.push(Violation {
                    pointer: "/fix/verify".into(),
                    value: format!("a string of {} characters", line.chars().count()),
                    rule:
                        "its quotes do not close (it is split into words like a POSIX shell would, without running one)"
                            .into(),
                });
            }
        }
        if !violations.is_empty() {
            return Err(ConfigError::Invalid { source_name: source_name.into(), violations });
        }
        for (entry, p) in &config.providers {
            if let Some(missing) = p.fallback.iter().find(|f| !config.providers.contains_key(*f) || *f == entry) {
                return Err(ConfigError::UnknownProvider {
                    source_name: source_name.into(),
                    name: format!(
                        "{} (in providers.{}.fallback)",
                        scrub(missing, MAX_QUOTED_CHARS),
                        scrub(entry, MAX_QUOTED_CHARS)
                    ),
                    known: config.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        if let Some(name) = &config.provider {
            if !config.providers.contains_key(name) && name != "builtin" {
                return Err(ConfigError::UnknownProvider {
                    source_name: source_name.into(),
                    name: scrub(name, MAX_QUOTED_CHARS),
                    known: config.providers.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(config)
    }
}

/// Every violation of the schema in `value`, and every `review.include`/`exclude` entry that is
/// not a valid glob, in document order. Values quoted in `value` and
/// `rule` are redacted and cut at [`MAX_QUOTED_CHARS`].
pub(crate) fn validate(value: &serde_json::Value) -> Vec<Violation> {
    let mut out: Vec<Violation> = validator()
        .iter_errors(value)
        .map(|e| {
            // No violation ever quotes a value from the file (issue #17: `config validate` on a
            // credentials file behind a symlink printed its password). The validator quotes the
            // whole value in its message: it becomes "the value"; a message that still holds
            // any of its strings or numbers says only which schema keyword failed.
            let full = e.instance().to_string();
            let message = e.to_string().replace(&full, "the value");
            let keyword = e.schema_path().as_str().rsplit('/').next().unwrap_or("").to_string();
            // These keywords' messages quote only the schema once the instance is replaced.
            let schema_only = [
                "required",
                "enum",
                "const",
                "type",
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "pattern",
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
                "additionalProperties",
            ]
            .contains(&keyword.as_str());
            let rule = if !schema_only && quotes_any_leaf(&message, e.instance()) {
                format!("fails the schema's `{}` rule", scrub(&keyword, MAX_QUOTED_CHARS))
            } else {
                scrub(&message, 4 * MAX_QUOTED_CHARS)
            };
            Violation {
                pointer: scrub(e.instance_path().as_str(), 2 * MAX_QUOTED_CHARS),
                value: shape(e.instance()),
                rule,
            }
        })
        .collect();
    // Globs are checked here, with the same parser `review` uses (globset), so a bad one is a
    // config error with its pointer, not a failure halfway through a review.
    for list in ["include", "exclude"] {
        let Some(globs) = value.pointer(&format!("/review/{list}")).and_then(|v| v.as_array()) else { continue };
        for (i, g) in globs.iter().enumerate() {
            let Some(text) = g.as_str() else { continue };
            if globset::Glob::new(text).is_err() {
                out.push(Violation {
                    pointer: format!("/review/{list}/{i}"),
                    value: shape(g),
                    rule: "not a valid glob (globset syntax: `*`, `**`, `?`, `[...]`, `{a,b}`)".into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out
}

/// What kind of value `v` is, never the value: `a string of 12 characters`, `an object with
/// 2 keys`, `an array of 3 items`, `a number`, `a boolean`, `null`.
fn shape(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    let n = |count: usize, one: &str, many: &str| format!("{count} {}", if count == 1 { one } else { many });
    match v {
        J::Null => "null".into(),
        J::Bool(_) => "a boolean".into(),
        J::Number(_) => "a number".into(),
        J::String(s) => format!("a string of {}", n(s.chars().count(), "character", "characters")),
        J::Array(a) => format!("an array of {}", n(a.len(), "item", "items")),
        J::Object(o) => format!("an object with {}", n(o.len(), "key", "keys")),
    }
}

/// Whether `message` holds any string (of 3 characters or more) or number found in `v`.
fn quotes_any_leaf(message: &str, v: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match v {
        J::String(s) => s.chars().count() >= 3 && message.contains(s.as_str()),
        J::Number(n) => message.contains(&n.to_string()),
        J::Array(a) => a.iter().any(|x| quotes_any_leaf(message, x)),
        J::Object(o) => o.values().any(|x| quotes_any_leaf(message, x)),
        J::Null | J::Bool(_) => false,
    }
}

/// `text` redacted (high-confidence token patterns) and cut at `max` characters, for quoting in
/// an error message.
pub(super) fn scrub(text: &str, max: usize) -> String {
    let text = crate::redact::Redactor::new().redact(text);
    if text.chars().count() <= max {
        return text;
    }
    text.chars().take(max.saturating_sub(3)).collect::<String>() + "..."
}

/// Converts parsed YAML to JSON, refusing what JSON cannot hold: `.nan`/`.inf` and non-string
/// keys. `pointer` is the JSON pointer of `value` (RFC 6901), for the message.
fn yaml_to_json(value: serde_yaml_ng::Value, pointer: &mut String) -> Result<serde_json::Value, String> {
    use serde_yaml_ng::Value as Y;
    let at = |p: &str| if p.is_empty() { "/".to_string() } else { p.to_string() };
    Ok(match value {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                let Some(num) = serde_json::Number::from_f64(f) else {
                    return Err(format!("at `{}`: {n} is not a finite number", at(pointer)));
                };
                serde_json::Value::Number(num)
            }
        }
        Y::String(s) => serde_json::Value::String(s),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                out.push(yaml_to_json(item, pointer)?);
                pointer.truncate(len);
            }
            serde_json::Value::Array(out)
        }
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let Y::String(key) = k else {
                    return Err(format!("at `{}`: a key is not a string", at(pointer)));
                };
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let v = yaml_to_json(v, pointer)?;
                pointer.truncate(len);
                out.insert(key, v);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("at `{}`: YAML tag `{}` is not supported", at(pointer), t.tag)),
    })
}

/// The 1-based line where `text` nests deeper than `limit`, or `None`.
///
/// A cheap, conservative pre-scan (it may count more levels than the parser, never fewer, on
/// input the parser accepts): block levels are distinct indentation levels plus compact `- `
/// and `? ` entries on one line; flow levels are `[`/`{` (inside flow, every one; in block
/// context, one at the start of a token). Inside flow collections quoted scalars are skipped,
/// since only there can they hide a closing bracket; `#` after whitespace starts a comment.
fn nesting_exceeds(text: &str, limit: usize) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    for (n, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let mut i = 0;
        let mut compact = 0;
        if flow == 0 {
            let indent = b.iter().take_while(|c| **c == b' ').count();
            if b[indent..].is_empty() || b[indent] == b'#' {
                continue;
            }
            while indents.last().is_some_and(|&t| t > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&t| t < indent) {
                indents.push(indent);
            }
            i = indent;
            while i < b.len() && matches!(b[i], b'-' | b'?') && b.get(i + 1).is_none_or(|c| *c == b' ') {
                compact += 1;
                i += 1;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
            }
        }
        let base = indents.len() + compact;
        if base > limit {
            return Some(n + 1);
        }
        // At the start of a token (where a flow collection or a quoted scalar may begin).
        let mut token_start = true;
        let mut after_ws = true;
        while i < b.len() {
            let c = b[i];
            i += 1;
            if let Some(q) = quote {
                // `\x` in double quotes, `''` in single quotes: an escaped character, not the end.
                let escaped = (q == b'"' && c == b'\\') || (c == q && q == b'\'' && b.get(i) == Some(&b'\''));
                if escaped {
                    i += 1;
                } else if c == q {
                    quote = None;
                    // A JSON-like key: `"a":'b'` may follow with no space.
                    token_start = false;
                    after_ws = false;
                    if b.get(i) == Some(&b':') {
                        i += 1;
                        token_start = true;
                    }
                }
                continue;
            }
            match c {
                b'#' if after_ws => break,
                // A tag or anchor before a node: the node still starts a token.
                b'!' | b'&' if token_start => {
                    while i < b.len() && !matches!(b[i], b' ' | b'\t' | b',' | b'[' | b']' | b'{' | b'}') {
                        i += 1;
                    }
                    continue;
                }
                b'[' | b'{' if flow > 0 || token_start || after_ws => {
                    flow += 1;
                    if base + flow > limit {
                        return Some(n + 1);
                    }
                    token_start = true;
                }
                b']' | b'}' if flow > 0 => {
                    flow -= 1;
                    token_start = false;
                }
                b',' | b'?' if flow > 0 => token_start = true,
                b':' if b.get(i).is_none_or(|c| *c == b' ' || *c == b'\t') => token_start = true,
                b'"' | b'\'' if flow > 0 && token_start => quote = Some(c),
                b' ' | b'\t' => {}
                b'-' if flow == 0 && token_start => {}
                _ => token_start = false,
            }
            after_ws = c == b' ' || c == b'\t';
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::STARTER;

    #[test]
    fn a_postgres_state_url_with_a_password_is_a_violation_that_never_quotes_it() {
        let err = Config::from_text("state: postgres://ci:hunter2-in-repo@db/ledger\n", "c.yml").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err:?}") };
        assert_eq!(violations[0].pointer, "/state");
        let text = err.to_string();
        assert!(text.contains("PGPASSWORD") && !text.contains("hunter2-in-repo"), "{text}");
        let err = Config::from_text("state: postgres://ci@db/ledger?sslmode=sometimes\n", "c.yml").unwrap_err();
        assert!(err.to_string().contains("sslmode=sometimes"), "{err}");
        let ok = Config::from_text("state: postgres://ci@db/ledger?sslmode=require\n", "c.yml").unwrap();
        assert_eq!(ok.state.as_deref(), Some(Path::new("postgres://ci@db/ledger?sslmode=require")));
        assert!(Config::from_text("state: /var/lib/agentctl/state.db\n", "c.yml").is_ok());
    }

    #[test]
    fn three_violations_are_all_reported_with_json_pointers() {
        let text = "provider: main\nproviders:\n  main:\n    kind: gpt\n    model: x\nreview:\n  max_inline_comments: -1\n  fail_on: sometimes\n";
        let err = Config::from_text(text, "bad.yml").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/providers/main/kind", "/review/fail_on", "/review/max_inline_comments"]);
        let msg = err.to_string();
        assert!(msg.contains("3 schema violation(s)") && msg.contains("found a string of 9 characters"), "{msg}");
        // No value from the file is quoted (issue #17): the file may be a credentials file.
        assert!(!msg.contains("sometimes") && !msg.contains("gpt") && !msg.contains("-1"), "{msg}");
    }

    #[test]
    fn unknown_keys_syntax_errors_and_dangling_provider_names_are_refused() {
        let err = Config::from_text("reveiw: {}\n", "typo.yml").unwrap_err().to_string();
        assert!(err.contains("reveiw"), "{err}");
        assert!(matches!(Config::from_text("a: [\n", "x"), Err(ConfigError::Syntax { .. })));
        assert!(matches!(Config::from_text("provider: nope\n", "x"), Err(ConfigError::UnknownProvider { .. })));
        let dangling = "providers:\n  a: {kind: openai, model: m, fallback: [b]}\n";
        assert!(matches!(Config::from_text(dangling, "x"), Err(ConfigError::UnknownProvider { .. })));
        // Kind-specific requirements are schema rules, reported with the rest.
        let err = Config::from_text("providers:\n  c: {kind: command}\n  z: {kind: azure-openai, model: m}\n", "x")
            .unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        let rules: Vec<&str> = violations.iter().map(|v| v.rule.as_str()).collect();
        assert!(rules.iter().any(|r| r.contains("command")) && rules.iter().any(|r| r.contains("deployment")), "{err}");
        // JSON is YAML too.
        let c = Config::from_text(r#"{"review": {"exclude": ["docs/**"]}}"#, "c.json").unwrap();
        assert_eq!(c.review.exclude, ["docs/**"]);
    }

    #[test]
    fn config_errors_print_file_contents() {
        // A long value, and a credential, in a place where the rule text quotes the value.
        let secret = "ghp_0123456789abcdefghijABCDEFGHIJ0123456789";
        let long = "x".repeat(5000);
        let text = format!("review:\n  max_inline_comments: \"{long}\"\n  fail_on: \"{secret}\"\n");
        let err = Config::from_text(&text, "c.yml").unwrap_err().to_string();
        assert!(!err.contains(&"x".repeat(81)), "a value longer than 80 characters was printed: {err}");
        assert!(!err.contains(secret), "a credential was printed: {err}");
        assert!(err.len() < 2000, "{err}");
        // Syntax errors and provider names go through the same scrubbing.
        let err = Config::from_text(&format!("provider: {secret}{long}\n"), "c.yml").unwrap_err().to_string();
        assert!(!err.contains(secret) && !err.contains(&"x".repeat(81)), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_config_never_has_its_values_quoted() {
        // Issue #17: a credentials file (here inside the repository, so it is parsed) printed
        // its values in the violations. Every shape of violation: unknown keys at the root,
        // wrong types, an object where a string goes, an enum, a glob, a nested oneOf.
        let values = ["hunter2-password", "AKIAEXAMPLE0KEYID", "s3cr3t-nested-value", "wrong[glob", "424242"];
        let text = format!(
            "password: {}\naws_access_key_id: {}\nprovider: {{secret: {}}}\nreview:\n  include: ['{}']\n  max_findings: {}\n  fail_on: {}\nproviders:\n  p: {{kind: openai, model: m, api_key_env: {}}}\n",
            values[0], values[1], values[2], values[3], values[4], values[0], values[1]
        );
        let err = Config::from_text(&text, "credentials.yml").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{msg}");
        for v in values {
            assert!(!msg.contains(v), "`{v}` was quoted:\n{msg}");
        }
        assert!(msg.contains("found a string of"), "{msg}");
    }

    #[test]
    fn deeply_nested_yaml_is_refused_before_parsing() {
        // Issue #7 item 14: 100k levels in 200 KB took 17 s of CPU in the YAML parser.
        let n = 100_000;
        let flow = format!("review:\n  instructions: {}{}\n", "[".repeat(n), "]".repeat(n));
        let err = Config::from_text(&flow, "deep.yml").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        let compact = format!("review:\n  instructions:\n    {}x\n", "- ".repeat(n));
        let err = Config::from_text(&compact, "deep.yml").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        // Closing brackets hidden in quoted strings do not lower the count.
        let sneaky = format!("review:\n  instructions: {}x{}\n", "[ \"]]\", ".repeat(100), "]".repeat(100));
        let err = Config::from_text(&sneaky, "deep.yml").unwrap_err().to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        // Ordinary brackets in prose and quoted text are fine.
        let ok =
            "review:\n  instructions: \"use [links](x) and {braces} and don't [worry\"\n  exclude: ['a/**', \"b]\"]\n";
        assert!(Config::from_text(ok, "ok.yml").is_ok());
        assert!(Config::from_text(STARTER, "starter").is_ok());
    }

    #[test]
    fn duplicate_yaml_keys_are_refused_with_the_key_name() {
        let err = Config::from_text("review:\n  fail_on: high\n  fail_on: none\n", "dup.yml").unwrap_err().to_string();
        assert!(err.contains("duplicate") && err.contains("fail_on"), "{err}");
    }

    #[test]
    fn nan_and_inf_are_named_not_a_finite_number() {
        for v in [".nan", ".inf", "-.inf"] {
            let text = format!("providers:\n  a:\n    kind: openai\n    timeout: {v}\n");
            let err = Config::from_text(&text, "c.yml").unwrap_err().to_string();
            assert!(err.contains("not a finite number") && err.contains("/providers/a/timeout"), "{v}: {err}");
        }
    }

    #[test]
    fn invalid_glob_is_refused_at_validation_not_at_review_time() {
        let err =
            Config::from_text("review:\n  include: ['src/**']\n  exclude: ['ok/**', 'a[b']\n", "g.yml").unwrap_err();
        let ConfigError::Invalid { violations, .. } = &err else { panic!("{err}") };
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].pointer, "/review/exclude/1");
        assert!(violations[0].rule.contains("glob"), "{err}");
        assert!(Config::from_text("review:\n  include: ['{a,b']\n", "g.yml").is_err());
    }
}
