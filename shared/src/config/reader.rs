//! How every config reads its variables: each read applies the variable's [`Need`] and records
//! a problem instead of stopping, so one read finds them all; [`Reader::finish`] turns the
//! result and the problems into the config or a [`ConfigError`].

use super::{ConfigError, Env, Need, Problem, Var};

pub(crate) struct Reader<'a> {
    env: &'a Env<'a>,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(env: &'a Env<'a>) -> Reader<'a> {
        Reader {
            env,
            problems: Vec::new(),
        }
    }

    /// Whether the variable is set (not blank).
    pub(crate) fn is_set(&self, var: &Var) -> bool {
        self.env.get(var.name).is_some()
    }

    /// The value, if set, whatever the variable's need (the caller decides what its absence
    /// means).
    pub(crate) fn optional(&self, var: &Var) -> Option<String> {
        self.env.get(var.name)
    }

    /// The value; missing is a problem whatever the variable's need (the caller knows that
    /// here it is required, e.g. the key files when no secret was read).
    pub(crate) fn required(&mut self, var: &Var) -> Option<String> {
        let value = self.env.get(var.name);
        if value.is_none() {
            self.problem(var, format!("{} is not set", var.name));
        }
        value
    }

    /// The value, or its default; a required one that is missing is a problem (`None`).
    pub(crate) fn text(&mut self, var: &Var) -> Option<String> {
        if let Some(value) = self.env.get(var.name) {
            return Some(value);
        }
        match var.need {
            Need::Default { default } => Some(default.to_string()),
            Need::Optional => None,
            Need::Unless { unless } if self.env.get(unless).is_some() => None,
            Need::Required | Need::Unless { .. } => {
                self.problem(var, format!("{} is not set", var.name));
                None
            }
        }
    }

    /// A whole number within `range` (the default too must be in it).
    pub(crate) fn number(
        &mut self,
        var: &Var,
        range: std::ops::RangeInclusive<u32>,
    ) -> Option<u32> {
        let raw = self.text(var)?;
        match raw.trim().parse::<u32>() {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.problem(
                    var,
                    format!(
                        "{}={raw:?} is not a number in {}..={}",
                        var.name,
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    /// Records a problem found while interpreting a variable.
    pub(crate) fn problem(&mut self, var: &Var, message: String) {
        self.problems.push(Problem {
            variable: var.name,
            message,
        });
    }

    /// How many problems are recorded so far (to tell whether a part of a read found one).
    pub(crate) fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// The config when nothing was wrong, else every problem.
    pub(crate) fn finish<T>(self, config: Option<T>) -> Result<T, ConfigError> {
        match config {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ if !self.problems.is_empty() => Err(ConfigError(self.problems)),
            // A reader that gave up without saying why: a bug, but never a silent start.
            _ => Err(ConfigError(vec![Problem {
                variable: "",
                message: "the configuration is incomplete".into(),
            }])),
        }
    }
}
