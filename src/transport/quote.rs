//! Shell quoting, the one place cairn turns argv into a command line (for ssh, whose remote side
//! always runs a shell, and for `sudo`). Everything remote is built as argv and quoted here.

/// Quotes one argument for a POSIX shell. Safe characters pass unchanged; anything else is
/// wrapped in single quotes with embedded single quotes written as `'\''`.
pub fn quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'+' | b',' | b'@' | b'%'));
    if safe {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for ch in arg.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// Quotes every argument and joins them with spaces.
pub fn quote_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter().map(|a| quote(a.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("/etc/motd"), "/etc/motd");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's $(x)"), "'it'\\''s $(x)'");
        assert_eq!(quote_argv(&["sh", "-c", "echo \"$1\""]), "sh -c 'echo \"$1\"'");
    }

    #[test]
    fn quoted_arguments_survive_a_real_shell() {
        let nasty = ["plain", "with space", "quote's", "$(touch /nonexistent)", "back\\slash", "new\nline", "*", "`x`", "\"dq\""];
        let line = format!("printf '%s\\0' {}", quote_argv(&nasty));
        let out = std::process::Command::new("sh").arg("-c").arg(&line).output().unwrap();
        let got: Vec<String> =
            out.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
        assert_eq!(got, nasty);
    }
}
