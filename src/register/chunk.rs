//! Register rows as read: one buffer a chunk, each value tagged and length-prefixed as the
//! engine gave it, in the order of [`COLUMNS`](super::COLUMNS).

use std::fmt;

use super::columns::{position, RawRow};

/// The place of `case_ref` in a row, found in the column table.
const CASE_REF: usize = position("case_ref");

/// Register rows as read, in one buffer: each row's values in the order of
/// [`COLUMNS`](super::COLUMNS) (the contract's columns, then the optional ones), each a NULL (`0`) or a value (`1`, its length as
/// 4 bytes little-endian, its bytes as the engine gave them). A poll takes a row's print over
/// exactly these bytes and makes a [`RawRow`] only of a row it is to compute: an unchanged row
/// costs no allocation on either side of the read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowChunk {
    data: Vec<u8>,
    /// Where each row ends in `data`.
    ends: Vec<usize>,
}

/// One row of a [`RowChunk`].
#[derive(Debug, Clone, Copy)]
pub struct EncodedRow<'a> {
    bytes: &'a [u8],
}

impl RowChunk {
    pub(super) fn with_capacity(rows: usize) -> RowChunk {
        RowChunk { data: Vec::with_capacity(rows * 160), ends: Vec::with_capacity(rows) }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// The rows of `other` after these.
    pub fn append(&mut self, other: &RowChunk) {
        let base = self.data.len();
        self.data.extend_from_slice(&other.data);
        self.ends.extend(other.ends.iter().map(|end| base + end));
    }

    pub fn rows(&self) -> impl Iterator<Item = EncodedRow<'_>> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter()).map(|(start, &end)| EncodedRow { bytes: &self.data[start..end] })
    }

    pub(super) fn push_value(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.data.push(0),
            Some(bytes) => {
                self.data.push(1);
                self.data.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                self.data.extend_from_slice(bytes);
            }
        }
    }

    /// A value in its `Display` form (a SQLite INTEGER or REAL where the contract says TEXT).
    pub(super) fn push_display(&mut self, value: impl fmt::Display) {
        use std::io::Write;
        self.data.push(1);
        let at = self.data.len();
        self.data.extend_from_slice(&[0; 4]);
        let _ = write!(self.data, "{value}");
        let len = (self.data.len() - at - 4) as u32;
        self.data[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    pub(super) fn end_row(&mut self) {
        self.ends.push(self.data.len());
    }

    /// Drops the values pushed since the last whole row.
    pub(super) fn drop_partial_row(&mut self) {
        self.data.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// A row given as text (read through sqlx, or made up by a test).
    pub fn push_raw(&mut self, raw: &RawRow) {
        self.push_texts(raw.values().map(|value| value.as_deref()));
    }

    /// A row of any view given as text values, in its columns' order (read through sqlx, or made
    /// up by a test).
    pub(super) fn push_texts<'v>(&mut self, values: impl IntoIterator<Item = Option<&'v str>>) {
        for value in values {
            self.push_value(value.map(str::as_bytes));
        }
        self.end_row();
    }
}

impl<'a> EncodedRow<'a> {
    /// The bytes a print is taken over.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The values in the order of [`COLUMNS`](super::COLUMNS) (of a placements read, of its
    /// SELECT).
    pub(super) fn values(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            let (&tag, after) = rest.split_first()?;
            if tag == 0 {
                rest = after;
                return Some(None);
            }
            let len = u32::from_le_bytes(after.get(..4)?.try_into().ok()?) as usize;
            let value = after.get(4..4 + len)?;
            rest = &after[4 + len..];
            Some(Some(value))
        })
    }

    /// Every value as text (invalid UTF-8 replaced), as [`sqlx::sqlite::SqliteRow`]'s
    /// [`TextRow`](super::TextRow) reads a value of any storage class.
    pub(super) fn texts(&self) -> Vec<Option<String>> {
        self.values().map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned())).collect()
    }

    /// The value of the column at `position` in [`COLUMNS`](super::COLUMNS), as the engine
    /// gave it (`None` for NULL).
    pub fn value(&self, position: usize) -> Option<&'a [u8]> {
        self.values().nth(position).flatten()
    }

    /// The case reference as text (invalid UTF-8 replaced), untrimmed.
    pub fn case_ref(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.values().nth(CASE_REF).flatten().map(String::from_utf8_lossy)
    }

    /// The row as text, checked: a value longer than `max_cell_bytes` is
    /// [`RejectReason::CellTooLarge`](super::RejectReason) and one that is not UTF-8
    /// [`RejectReason::NotUtf8`](super::RejectReason), naming the first such column (a lossy
    /// decoding would merge two references that differ only in their invalid bytes).
    pub fn to_checked_raw(&self, max_cell_bytes: usize) -> Result<RawRow, super::Rejection> {
        use super::{RejectReason, COLUMNS};
        // The case reference of the rejection, when it is itself fit to name the case.
        let case_ref = self
            .values()
            .nth(CASE_REF)
            .flatten()
            .filter(|b| b.len() <= max_cell_bytes)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        let mut values = Vec::with_capacity(COLUMNS.len());
        for (column, value) in COLUMNS.iter().zip(self.values()) {
            let text = match value {
                None => None,
                Some(bytes) if bytes.len() > max_cell_bytes => {
                    return Err(super::Rejection { reason: RejectReason::CellTooLarge, column: column.name, case_ref })
                }
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => Some(text.to_string()),
                    Err(_) => {
                        return Err(super::Rejection { reason: RejectReason::NotUtf8, column: column.name, case_ref })
                    }
                },
            };
            values.push(text);
        }
        Ok(RawRow::from_values(values))
    }

    /// The row as text: every value as [`RawRow`] holds it, invalid UTF-8 replaced.
    pub fn to_raw(&self) -> RawRow {
        RawRow::from_values(self.values().map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk keeps every value apart (NULL from empty text), in order, whatever its bytes; text
    /// that is not UTF-8 becomes replacement characters only when a row is made text.
    #[test]
    fn a_row_chunk_gives_back_the_rows_put_in() {
        let mut chunk = RowChunk::default();
        let full = RawRow {
            case_ref: Some("2026-BU-1 ".into()),
            unit: Some(String::new()),
            caseworker: Some("å@kommun.example".into()),
            updated_at: Some("2026-01-05T10:00:00Z".into()),
            follow_up_ended_on: Some("2026-02-01".into()),
            ..RawRow::default()
        };
        chunk.push_raw(&full);
        chunk.push_raw(&RawRow::default());
        chunk.push_value(Some(b"\xff-1"));
        chunk.push_display(42);
        chunk.push_display(1.5);
        for _ in 3..super::super::WIDTH {
            chunk.push_value(None);
        }
        chunk.end_row();
        let mut other = RowChunk::default();
        other.append(&chunk);
        other.append(&chunk);
        let rows: Vec<RawRow> = other.rows().map(|r| r.to_raw()).collect();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0], full);
        assert_eq!(rows[1], RawRow::default());
        assert_eq!((rows[2].case_ref.as_deref(), rows[2].unit.as_deref()), (Some("\u{fffd}-1"), Some("42")));
        assert_eq!(rows[2].caseworker.as_deref(), Some("1.5"));
        assert_eq!(rows[3..], rows[..3]);
        assert_eq!(other.rows().next().unwrap().case_ref().as_deref(), Some("2026-BU-1 "));
        let prints: Vec<&[u8]> = other.rows().map(|r| r.bytes()).collect();
        assert_ne!(prints[0], prints[1]);
        assert_eq!(prints[0], prints[3]);
    }
}
