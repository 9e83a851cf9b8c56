//! Column-aligned tables as Junos prints them: a heading line, then one line per row,
//! columns left-aligned and separated by two spaces, no borders, so `grep` and `awk`
//! work on the output.

/// A table being built.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new<const N: usize>(headers: [&str; N]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty, extra cells are dropped.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        let mut cells = cells.to_vec();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, every line ending in a newline. The last column is not
    /// padded, so lines carry no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let last = line.len().saturating_sub(1);
            for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = w - cell.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_spaces() {
        let mut t = Table::new(["Name", "State", "X"]);
        t.row(["gw-long-name".to_owned(), "UP".to_owned(), "1".to_owned()]);
        t.row(["a".to_owned(), "DOWN".to_owned(), "22".to_owned()]);
        assert_eq!(
            t.render(),
            "Name          State  X\ngw-long-name  UP     1\na             DOWN   22\n"
        );
    }
}
