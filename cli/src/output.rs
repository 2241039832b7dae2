//! How results reach stdout: `-o table` (aligned columns or a key: value block) or `-o json`
//! (one document, or one compact object per line for event streams). Only results go to
//! stdout; warnings and errors are stderr's, so scripts can parse what they read here.

use std::io::{self, Write};

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Rows under a header, each column as wide as its widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        let lines: Vec<&Vec<String>> = std::iter::once(&header).chain(&self.rows).collect();
        let columns = self.header.len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| lines.iter().map(|line| line.get(c).map_or(0, |cell| cell.chars().count())).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (c, cell) in line.iter().enumerate().take(columns) {
                if c + 1 == columns {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values lined up.
pub struct Fields(Vec<(&'static str, String)>);

impl Fields {
    pub fn new() -> Self {
        Fields(Vec::new())
    }

    pub fn add(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, value.into()));
        self
    }

    /// One line per value, the key on the first only; `empty` when there are none.
    pub fn add_list(mut self, key: &'static str, values: Vec<String>, empty: &str) -> Self {
        if values.is_empty() {
            return self.add(key, empty);
        }
        for (i, value) in values.into_iter().enumerate() {
            // An empty key marks a continuation line: no label.
            self.0.push((if i == 0 { key } else { "" }, value));
        }
        self
    }

    pub fn render(&self) -> String {
        let width = self.0.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
        self.0
            .iter()
            .map(|(key, value)| {
                let label = if key.is_empty() { String::new() } else { format!("{key}:") };
                format!("{label:<width$}  {value}").trim_end().to_string() + "\n"
            })
            .collect()
    }
}

impl Default for Fields {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes text to stdout as is and flushes, so streamed lines appear at once.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one JSON document, pretty-printed.
pub fn print_json<T: Serialize>(value: &T) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    print(&(text + "\n"))
}

/// Writes one JSON object on a line of its own (NDJSON), for streams.
pub fn print_json_line<T: Serialize>(value: &T) -> io::Result<()> {
    let text = serde_json::to_string(value).map_err(io::Error::other)?;
    print(&(text + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up() {
        let mut t = Table::new(&["ID", "NAME", "ROLE"]);
        t.row(vec!["1".into(), "node-one".into(), "voter".into()]);
        t.row(vec!["12".into(), "n2".into(), "".into()]);
        assert_eq!(t.render(), "ID  NAME      ROLE\n1   node-one  voter\n12  n2\n");
    }

    #[test]
    fn fields_line_up() {
        let f = Fields::new().add("name", "web1").add("memory", "1 GiB");
        assert_eq!(f.render(), "name:    web1\nmemory:  1 GiB\n");
    }

    #[test]
    fn lists_continue_under_their_first_value() {
        let f = Fields::new().add("name", "web1").add_list("disks", vec!["a".into(), "b".into()], "-").add_list(
            "nics",
            vec![],
            "none",
        );
        assert_eq!(f.render(), "name:   web1\ndisks:  a\n        b\nnics:   none\n");
    }
}
