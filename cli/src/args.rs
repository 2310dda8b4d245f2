//! A small command-line parser: `--name value` options, `--switch` flags, positionals.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct Args {
    options: HashMap<String, String>,
    switches: HashSet<String>,
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `args`; `options` take a value, `switches` do not; anything else starting with
    /// `--` is an error.
    pub fn parse(args: &[String], options: &[&str], switches: &[&str]) -> Result<Args, String> {
        let mut parsed = Args::default();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if options.contains(&arg.as_str()) {
                let value = rest.next().ok_or(format!("{arg} needs a value"))?;
                parsed.options.insert(arg.clone(), value.clone());
            } else if switches.contains(&arg.as_str()) {
                parsed.switches.insert(arg.clone());
            } else if arg.starts_with("--") {
                return Err(format!("unknown option {arg}"));
            } else {
                parsed.positional.push(arg.clone());
            }
        }
        Ok(parsed)
    }

    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(name)
    }

    /// The option, else `fallback` (its value from the config).
    pub fn option_or(&self, name: &str, fallback: Option<String>) -> Option<String> {
        self.option(name).map(str::to_string).or(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_switches_and_positionals() {
        let a = Args::parse(
            &strings(&["show", "--table", "t", "mch_1", "--publishable"]),
            &["--table"],
            &["--publishable"],
        )
        .unwrap();
        assert_eq!(a.positional, ["show", "mch_1"]);
        assert_eq!(a.option("--table"), Some("t"));
        assert!(a.switch("--publishable"));
        assert!(Args::parse(&strings(&["--nope"]), &[], &[]).is_err());
        assert!(Args::parse(&strings(&["--table"]), &["--table"], &[]).is_err());
        assert_eq!(
            a.option_or("--table", Some("u".into())).as_deref(),
            Some("t")
        );
        assert_eq!(
            a.option_or("--endpoint", Some("u".into())).as_deref(),
            Some("u")
        );
    }
}
