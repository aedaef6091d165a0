//! `${VAR}` substitution in a value as written.

/// Looks a variable up; `None` when unset.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands `${VAR}` references in `text`; `$${` is a literal `${` (as in
/// Docker Compose), for a token or header value that holds one. Every
/// problem is returned, each as a message.
pub(super) fn expand(text: &str, env: Env<'_>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if let Some(kept) = rest[..start].strip_suffix('$') {
            out.push_str(kept);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errors.push(
                "`${` without a closing `}`; write `${NAME}` to use the environment variable NAME"
                    .to_owned(),
            );
            rest = "";
            break;
        };
        let name = &after[..end];
        if !is_variable_name(name) {
            errors.push(format!(
                "`${{{name}}}` does not name a variable; write `${{NAME}}` with letters, digits and `_`, not starting with a digit"
            ));
        } else {
            match env(name) {
                Some(value) => out.push_str(&value),
                None => errors.push(format!(
                    "environment variable `{name}` is not set; set it, or write the value in place of `${{{name}}}`"
                )),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubled_dollar_keeps_a_literal_reference() {
        let env = |name: &str| (name == "X").then(|| "x".to_owned());
        assert_eq!(expand("a${X}b", &env), Ok("axb".to_owned()));
        assert_eq!(expand("$${X}", &env), Ok("${X}".to_owned()));
        assert_eq!(expand("$${UNSET}", &env), Ok("${UNSET}".to_owned()));
        assert_eq!(expand("p$${x}q${X}", &env), Ok("p${x}qx".to_owned()));
        assert_eq!(expand("$$ ${X}", &env), Ok("$$ x".to_owned()));
        assert!(expand("${UNSET}", &env).is_err());
    }
}
