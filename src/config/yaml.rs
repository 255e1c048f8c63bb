//! A typed reader over parsed YAML that knows where it is: every error names
//! the file, the dotted key path, the value found and what is allowed, and
//! unknown keys get a did-you-mean.

use std::cell::RefCell;
use std::fmt;

use yaml_rust2::Yaml;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: `{}`: {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// One node of the document with its path; tracks which map keys were read.
pub struct Node<'a> {
    pub file: &'a str,
    pub path: String,
    pub value: &'a Yaml,
    read: RefCell<Vec<String>>,
}

pub fn show(v: &Yaml) -> String {
    match v {
        Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        Yaml::Hash(_) => "a mapping".into(),
        Yaml::Null => "null".into(),
        _ => "an unreadable value".into(),
    }
}

impl<'a> Node<'a> {
    pub fn root(file: &'a str, value: &'a Yaml) -> Self {
        Node {
            file,
            path: String::new(),
            value,
            read: RefCell::new(Vec::new()),
        }
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: self.path.clone(),
            message: message.into(),
        }
    }

    fn wrong(&self, expected: &str) -> ConfigError {
        self.error(format!("expected {expected}, found {}", show(self.value)))
    }

    /// YAML 1.2's core schema also spells null `Null` and `NULL` (ml-dr's
    /// configs write `NULL`), which yaml-rust2 reads as strings.
    pub fn is_null(&self) -> bool {
        match self.value {
            Yaml::Null => true,
            Yaml::String(s) => matches!(s.as_str(), "Null" | "NULL"),
            _ => false,
        }
    }

    /// Keys of a mapping, in document order.
    pub fn keys(&self) -> Result<Vec<String>> {
        match self.value {
            Yaml::Hash(h) => h
                .keys()
                .map(|k| match k {
                    Yaml::String(s) => Ok(s.clone()),
                    other => Err(self.error(format!("keys must be names, found {}", show(other)))),
                })
                .collect(),
            Yaml::Null => Ok(Vec::new()),
            _ => Err(self.wrong("a mapping")),
        }
    }

    /// Child `key`, or `None` when absent; marks it as read.
    pub fn get(&self, key: &str) -> Result<Option<Node<'a>>> {
        let h = match self.value {
            Yaml::Hash(h) => h,
            Yaml::Null => return Ok(None),
            _ => return Err(self.wrong("a mapping")),
        };
        self.read.borrow_mut().push(key.to_owned());
        Ok(h.get(&Yaml::String(key.to_owned())).map(|v| Node {
            file: self.file,
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
            value: v,
            read: RefCell::new(Vec::new()),
        }))
    }

    pub fn require(&self, key: &str) -> Result<Node<'a>> {
        self.get(key)?
            .ok_or_else(|| self.error(format!("missing key `{key}`")))
    }

    /// Keys present but never read: each is an error with a suggestion
    /// drawn from `allowed`.
    pub fn unknown_keys(&self, allowed: &[&str]) -> Result<Vec<(String, String)>> {
        let read = self.read.borrow();
        Ok(self
            .keys()?
            .into_iter()
            .filter(|k| !read.contains(k))
            .map(|k| {
                let hint = did_you_mean(&k, allowed);
                (k, hint)
            })
            .collect())
    }

    /// Fails on the first key not read, naming what is allowed.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<()> {
        if let Some((k, hint)) = self.unknown_keys(allowed)?.into_iter().next() {
            let key = if self.path.is_empty() {
                k.clone()
            } else {
                format!("{}.{k}", self.path)
            };
            return Err(ConfigError {
                file: self.file.to_owned(),
                key,
                message: format!("unknown key.{hint} Allowed here: {}", allowed.join(", ")),
            });
        }
        Ok(())
    }

    pub fn f64(&self) -> Result<f64> {
        match self.value {
            Yaml::Real(s) => s.parse().map_err(|_| self.wrong("a number")),
            Yaml::Integer(i) => Ok(*i as f64),
            _ => Err(self.wrong("a number")),
        }
    }

    pub fn i64(&self) -> Result<i64> {
        match self.value {
            Yaml::Integer(i) => Ok(*i),
            _ => Err(self.wrong("an integer")),
        }
    }

    pub fn bool(&self) -> Result<bool> {
        match self.value {
            Yaml::Boolean(b) => Ok(*b),
            _ => Err(self.wrong("true or false")),
        }
    }

    pub fn str(&self) -> Result<&'a str> {
        match self.value {
            Yaml::String(s) => Ok(s),
            _ => Err(self.wrong("a name")),
        }
    }

    pub fn list(&self) -> Result<Vec<Node<'a>>> {
        match self.value {
            Yaml::Array(a) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| Node {
                    file: self.file,
                    path: format!("{}[{i}]", self.path),
                    value: v,
                    read: RefCell::new(Vec::new()),
                })
                .collect()),
            _ => Err(self.wrong("a list")),
        }
    }

    /// A number within `[lo, hi]`.
    pub fn f64_in(&self, lo: f64, hi: f64) -> Result<f64> {
        let v = self.f64()?;
        if !(lo..=hi).contains(&v) {
            return Err(self.error(format!("{v} is out of range: allowed {lo} to {hi}")));
        }
        Ok(v)
    }

    /// An integer within `[lo, hi]`.
    pub fn int_in(&self, lo: i64, hi: i64) -> Result<i64> {
        let v = self.i64()?;
        if !(lo..=hi).contains(&v) {
            return Err(self.error(format!("{v} is out of range: allowed {lo} to {hi}")));
        }
        Ok(v)
    }

    /// A list of exactly `n` numbers.
    pub fn f64s(&self, n: usize) -> Result<Vec<f64>> {
        let items = self.list()?;
        if items.len() != n {
            return Err(self.error(format!("expected {n} numbers, found {}", show(self.value))));
        }
        items.iter().map(Node::f64).collect()
    }
}

/// " Did you mean `x`?" for the closest allowed name, or "".
pub fn did_you_mean(word: &str, allowed: &[&str]) -> String {
    allowed
        .iter()
        .map(|a| (edit_distance(word, a), *a))
        .filter(|(d, a)| *d <= 3.max(a.len() / 3))
        .min()
        .map(|(_, a)| format!(" Did you mean `{a}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let allowed = ["random_resized_crop", "random_crop", "resize"];
        assert_eq!(
            did_you_mean("random_resize_crop", &allowed),
            " Did you mean `random_resized_crop`?"
        );
        assert_eq!(did_you_mean("rezise", &allowed), " Did you mean `resize`?");
        assert_eq!(did_you_mean("colour_jitter", &allowed), "");
    }
}
