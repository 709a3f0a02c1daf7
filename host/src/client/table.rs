//! Tables for people: columns padded to their widest cell, the widest ones
//! (but the first) cut with `…` until the table fits the terminal, states in colour, and
//! colour only on a terminal (`NO_COLOR` and `CLICOLOR` are honoured).

use console::{Alignment, Color, Style, measure_text_width, pad_str, truncate_str};

/// Narrowest a column is cut to.
const MIN_WIDTH: usize = 6;
/// Between two columns.
const GAP: &str = "  ";

/// One cell: its text and how it is tinted on a terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    text: String,
    colour: Option<Color>,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, colour: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_string())
    }
}

/// A job's or a workflow's state, in the colour a person reads it by.
pub fn state(name: &str) -> Cell {
    let colour = match name {
        "completed" => Some(Color::Green),
        "failed" | "expired" => Some(Color::Red),
        "running" => Some(Color::Cyan),
        "cancelled" | "various" | "various_complete" => Some(Color::Yellow),
        _ => None,
    };
    Cell { text: name.to_string(), colour }
}

/// Rows under a header.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (one cell per column).
    pub fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The table as lines, fitted to `width` columns if given.
    pub fn render(&self, width: Option<usize>, colour: bool) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(measure_text_width(&cell.text));
            }
        }
        if let Some(limit) = width {
            fit(&mut widths, limit);
        }
        let bold = Style::new().bold().force_styling(colour);
        let header: Vec<String> = self
            .headers
            .iter()
            .zip(&widths)
            .map(|(h, &w)| bold.apply_to(pad(h, w)).to_string())
            .collect();
        let mut out = header.join(GAP).trim_end().to_string();
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| {
                    let text = pad(&cell.text, w);
                    match cell.colour {
                        Some(c) => {
                            Style::new().fg(c).force_styling(colour).apply_to(text).to_string()
                        }
                        None => text,
                    }
                })
                .collect();
            out.push_str(cells.join(GAP).trim_end());
            out.push('\n');
        }
        out
    }
}

/// A cell's text cut to `width` and padded to it.
fn pad(text: &str, width: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    let cut = truncate_str(&one_line, width, "…");
    pad_str(&cut, width, Alignment::Left, None).into_owned()
}

/// Narrows the widest columns, one character at a time, until the columns
/// and gaps fit `limit` or every column is at its minimum. The first column
/// names the row (an id a person copies into the next command), so it is
/// never cut.
fn fit(widths: &mut [usize], limit: usize) {
    let gaps = GAP.len() * widths.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > limit {
        let cuttable = widths.iter_mut().skip(1).filter(|w| **w > MIN_WIDTH);
        let Some(widest) = cuttable.max_by_key(|w| **w) else {
            return;
        };
        *widest -= 1;
    }
}

/// `label: value` lines, the labels aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1;
    rows.iter().map(|(label, value)| format!("{:width$} {value}\n", format!("{label}:"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_table_is_cut_to_the_terminal_and_keeps_its_columns() {
        let mut table = Table::new(&["ID", "STATE", "NAME"]);
        table.row(vec!["0190-aaaa-bbbb-cccc".into(), state("completed"), "x".repeat(80).into()]);
        let full = table.render(None, false);
        assert!(full.lines().nth(1).unwrap().ends_with(&"x".repeat(80)));
        let fitted = table.render(Some(40), false);
        for line in fitted.lines() {
            assert!(measure_text_width(line) <= 40, "{line:?}");
        }
        assert!(fitted.contains("completed") && fitted.contains('…'), "{fitted}");
        assert!(fitted.contains("0190-aaaa-bbbb-cccc"), "ids stay whole: {fitted}");
        assert!(!fitted.contains('\u{1b}'), "no colour unless asked");
        assert!(table.render(None, true).contains('\u{1b}'));
    }
}
