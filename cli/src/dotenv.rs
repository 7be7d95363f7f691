//! `.env` files and `$VAR` interpolation in deployment files, by compose's rules.
//!
//! Interpolation: `$VAR` and `${VAR}` are the variable's value; `${VAR:-default}` (unset or
//! empty) and `${VAR-default}` (unset) give a default; `${VAR:?message}` and
//! `${VAR?message}` make an unset (or empty) variable an error with that message; `$$` is a
//! literal `$` — which is how a command run by `sh -c` refers to a shell or pod variable
//! (`"echo $$HOME"`). A variable that is not set and has no default is an error.
//!
//! `.env` syntax: `KEY=VALUE` lines; blank lines and lines starting with `#` are skipped; an
//! `export ` prefix is allowed; a value may be in single quotes (taken as is) or double
//! quotes (with `\n`, `\t`, `\\` and `\"` escapes); an unquoted value ends at ` #`.

use std::collections::BTreeMap;

/// Variables for interpolation.
pub type Vars = BTreeMap<String, String>;

/// Parses a `.env` file's text. An error gives the line (from 1) and what was wrong.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut pairs = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_number, format!("{line:?} is not KEY=VALUE")));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err((
                line_number,
                format!("{key:?} is not a variable name; expected letters, digits and _"),
            ));
        }
        let value = value.trim();
        // After a closing quote, only a comment may follow.
        let only_comment = |after: &str| {
            let after = after.trim_start();
            if after.is_empty() || after.starts_with('#') {
                Ok(())
            } else {
                Err((
                    line_number,
                    format!("{after:?} after the closing quote; expected nothing or a # comment"),
                ))
            }
        };
        let value = if let Some(rest) = value.strip_prefix('\'') {
            let end = rest
                .find('\'')
                .ok_or((line_number, "a single quote is not closed".to_string()))?;
            only_comment(&rest[end + 1..])?;
            rest[..end].to_string()
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.char_indices();
            let mut closed = None;
            while let Some((at, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = Some(at);
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(other) => out.push(other),
                        None => out.push('\\'),
                    },
                    c => out.push(c),
                }
            }
            let end = closed.ok_or((line_number, "a double quote is not closed".to_string()))?;
            only_comment(&rest[end + 1..])?;
            out
        } else {
            value
                .split(" #")
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_string()
        };
        if value.contains('\0') {
            return Err((line_number, "the value contains a NUL byte".into()));
        }
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

/// The error of `${NAME:?message}`: the file's own message, or what to do.
fn required(name: &str, message: &str) -> String {
    if message.trim().is_empty() {
        format!("variable {name} is not set and is required here (${{{name}:?}}); set it in the environment or the .env file beside the deployment file")
    } else {
        format!("variable {name} is not set: {message}")
    }
}

/// `text` with its variables replaced; the error says which variable and what to do.
pub fn interpolate(text: &str, vars: &Vars) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    const HINT: &str = "set it, give a default with ${NAME:-default}, or write $$ for a literal $";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after.find('}').ok_or_else(|| {
                format!(
                    "\"${{\" is not closed in {text:?}; close it with }} (${{NAME}}), or \
                         write $$ for a literal $"
                )
            })?;
            let inner = &after[..end];
            rest = &after[end + 1..];
            if inner.contains("${") {
                return Err(format!(
                    "\"${{{inner}}}}}\": a variable inside a default is not supported; expected ${{NAME:-text}}"
                ));
            }
            let name_end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            let (name, modifier) = inner.split_at(name_end);
            if name.is_empty() {
                return Err(format!("\"${{{inner}}}\" names no variable; {HINT}"));
            }
            let value = vars.get(name);
            let empty = value.is_none_or(|v| v.is_empty());
            let replaced = match modifier {
                "" => value.cloned().ok_or_else(|| {
                    format!("variable {name} is not set; {}", HINT.replace("NAME", name))
                })?,
                m if m.starts_with(":-") => match value {
                    Some(v) if !v.is_empty() => v.clone(),
                    _ => m[2..].to_string(),
                },
                m if m.starts_with('-') => value.cloned().unwrap_or_else(|| m[1..].to_string()),
                m if m.starts_with(":?") => match value {
                    Some(v) if !empty => v.clone(),
                    _ => return Err(required(name, &m[2..])),
                },
                m if m.starts_with('?') => value.cloned().ok_or_else(|| required(name, &m[1..]))?,
                other => {
                    return Err(format!(
                        "\"${{{inner}}}\": {other:?} is not understood; expected ${{{name}}}, \
                         ${{{name}:-default}} or ${{{name}:?message}}"
                    ))
                }
            };
            out.push_str(&replaced);
        } else {
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                let shown: String = rest.chars().take(8).collect();
                return Err(format!(
                    "\"${shown}\" is not a variable; write $$ for a literal $ (as a command run by \
                     sh -c needs for its own variables)"
                ));
            }
            let value = vars.get(name).ok_or_else(|| {
                format!(
                    "variable {name} is not set; {} (\"$${name}\" leaves it to the shell)",
                    HINT.replace("NAME", name)
                )
            })?;
            out.push_str(value);
            rest = &rest[name_end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("HOME", "/home/me"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn interpolation_by_compose_rules() {
        let v = vars();
        let cases = [
            ("plain", "plain"),
            ("$HOME/x", "/home/me/x"),
            ("${HOME}x", "/home/mex"),
            ("${UNSET:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${UNSET-dflt}", "dflt"),
            ("echo $$HOME $$(seq 3)", "echo $HOME $(seq 3)"),
            ("--port={port} $PORT", "--port={port} 8080"),
            ("${PORT:?needed}", "8080"),
        ];
        for (text, expected) in cases {
            assert_eq!(interpolate(text, &v).as_deref(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn interpolation_errors_say_what_to_do() {
        let v = vars();
        for (text, expected) in [
            ("$UNSET", "variable UNSET is not set"),
            ("${UNSET}", "${UNSET:-default}"),
            (
                "${UNSET:?give a token}",
                "variable UNSET is not set: give a token",
            ),
            ("${EMPTY:?give a token}", "give a token"),
            ("${HOME", "is not closed"),
            ("${}", "names no variable"),
            ("${HOME:+x}", "is not understood"),
            ("echo $1", "write $$ for a literal $"),
            ("cost: $ 5", "write $$"),
            ("${A:-${B}}", "a variable inside a default is not supported"),
        ] {
            let error = interpolate(text, &v).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(interpolate("$UNSET", &v).unwrap_err().contains("$$"));
        // A required variable without a message, and a brace left open, say what to do.
        let error = interpolate("${UNSET:?}", &v).unwrap_err();
        assert!(!error.trim_end().ends_with(':'), "{error}");
        assert!(error.contains("required"), "{error}");
        let error = interpolate("${UNSET?}", &v).unwrap_err();
        assert!(error.contains("required"), "{error}");
        let error = interpolate("${HOME", &v).unwrap_err();
        assert!(error.contains("close it with }"), "{error}");
        assert!(!error.contains("give a default"), "{error}");
    }

    #[test]
    fn dotenv_lines() {
        let text = "# comment\n\nA=1\nexport B = two words # note\nC='single #kept' # note\nD=\"a\\nb \\\"q\\\"\" # note\nE=\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "single #kept".into()),
                ("D".into(), "a\nb \"q\"".into()),
                ("E".into(), String::new()),
            ]
        );
        assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().0, 2);
        assert!(parse("A='open\n").unwrap_err().1.contains("not closed"));
        assert!(parse("B C=1\n")
            .unwrap_err()
            .1
            .contains("not a variable name"));
    }
}
