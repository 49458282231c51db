//! Reading the production traces' CSV files: plain comma-separated cells without quotes,
//! every error naming the file, the line and the column.

/// A CSV cell that could not be read, with where it is, or an import option refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {reason}", if *line == 0 { String::new() } else { format!(":{line}:{column}") })]
pub struct ImportError {
    /// The file, as the caller named it, or the option refused.
    pub file: String,
    /// 1-based line; 0 for an option.
    pub line: usize,
    /// 1-based column (character) where the cell starts.
    pub column: usize,
    /// Why it was refused.
    pub reason: String,
}

/// A CSV file's text and the name its errors carry.
#[derive(Debug, Clone, Copy)]
pub struct CsvFile<'a> {
    /// Name in errors.
    pub name: &'a str,
    /// Contents.
    pub text: &'a str,
}

impl ImportError {
    /// An error at a cell of `file`.
    pub fn at(file: &str, line: usize, column: usize, reason: impl Into<String>) -> Self {
        Self { file: file.into(), line, column, reason: reason.into() }
    }
}

/// A data line's number and its cells, each with the column it starts at.
pub(crate) type Row<'a> = (usize, Vec<(usize, &'a str)>);

/// The header's names and the cells of each data line; every line has the header's width.
/// With `expected`, a different header is refused before any data line is read.
pub(crate) fn table<'a>(
    file: CsvFile<'a>,
    expected: Option<&[&str]>,
) -> Result<(Vec<&'a str>, Vec<Row<'a>>), ImportError> {
    let err = |line: usize, column: usize, reason: String| ImportError::at(file.name, line, column, reason);
    let mut lines = file.text.lines().enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    let (_, first) =
        lines.next().ok_or_else(|| err(1, 1, "the file is empty; a header line is needed".into()))?;
    let header: Vec<&str> = first.split(',').collect();
    if let Some(want) = expected
        && header != want
    {
        return Err(err(1, 1, format!("the header must be `{}`, found `{first}`", want.join(","))));
    }
    let mut out = Vec::new();
    for (line, text) in lines.filter(|(_, l)| !l.is_empty()) {
        let mut cells = Vec::with_capacity(header.len());
        let mut column = 1;
        for cell in text.split(',') {
            if cell.contains('"') {
                return Err(err(line, column, "quoted cells are not expected in this trace".into()));
            }
            cells.push((column, cell));
            column += cell.chars().count() + 1;
        }
        if cells.len() != header.len() {
            return Err(err(line, 1, format!("{} cells, the header has {}", cells.len(), header.len())));
        }
        out.push((line, cells));
    }
    Ok((header, out))
}

/// The index of the column `name` in `header`; the error names the file and the header.
pub(crate) fn column_index(file: &str, header: &[&str], name: &str) -> Result<usize, ImportError> {
    header.iter().position(|h| h.trim() == name).ok_or_else(|| {
        ImportError::at(file, 1, 1, format!("no column `{name}` in the header `{}`", header.join(",")))
    })
}

/// A cell read as a finite number (at least 0 where `at_least_zero`); the error names the
/// file, line and column, and the column's name as `what`.
pub(crate) fn number(
    file: &str,
    line: usize,
    (column, cell): (usize, &str),
    what: &str,
    at_least_zero: bool,
) -> Result<f64, ImportError> {
    match cell.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (!at_least_zero || x >= 0.0) => Ok(x),
        _ => Err(ImportError::at(
            file,
            line,
            column,
            format!(
                "{what} must be a finite number{}, got `{cell}`",
                if at_least_zero { " of at least 0" } else { "" }
            ),
        )),
    }
}

/// The cells of each data line after checking that the header is exactly `header`.
pub(crate) fn rows<'a>(file: CsvFile<'a>, header: &[&str]) -> Result<Vec<Row<'a>>, ImportError> {
    table(file, Some(header)).map(|(_, rows)| rows)
}
