//! Per-case fingerprints: for every case whose deadlines are stored, the print (a 64-bit hash)
//! of the register row and settings they were computed from. A poll compares a row's print with
//! the stored one and computes and writes only the cases that differ, so that an unchanged
//! register costs a read and no statement per case (issue "Performance at national scale").
//!
//! The prints live in buckets chosen by a hash of the case reference: `2^bits` rows of
//! `case_prints`, each holding the (print, case reference) pairs of its cases in one blob, about
//! 16 cases a bucket. A full pass loads every print in a few thousand rows (a row per case would
//! cost a row's round trip each, more than the register read itself); a poll of 1 000 changed
//! rows reads and rewrites about 1 000 small rows. `poll_state.print_bits` is NULL until the first
//! full pass has built the book, which from then on also lists every case with stored deadlines
//! (the cases a full pass did not read left the register).
//!
//! Blob layout, repeated: the print (8 bytes, little-endian), the length of the case reference (2
//! bytes, little-endian), the case reference (UTF-8).

use std::collections::{BTreeSet, HashMap};

use futures_util::TryStreamExt;
use xxhash_rust::xxh3::xxh3_64;

use super::{column, query_error, with_pool, StateError, StateStore, BATCH_ROWS};

/// The print stored for a case whose row was seen but never understood (a broken row): it lists
/// the case (so that a full pass notices when it leaves the register) and matches no row.
pub const NO_PRINT: u64 = 0;

/// Cases per bucket aimed at when the book is (re)built; it is rebuilt when a full pass finds the
/// average outside `MIN_LOAD..=MAX_LOAD`.
const TARGET_LOAD: usize = 16;
const MIN_LOAD: usize = 4;
const MAX_LOAD: usize = 64;
const MIN_BITS: u32 = 4;
const MAX_BITS: u32 = 24;

/// The prints of some or all buckets, with the buckets changed since they were loaded.
#[derive(Debug, Default)]
pub struct PrintBook {
    bits: u32,
    buckets: HashMap<u32, Vec<u8>>,
    dirty: BTreeSet<u32>,
    /// Cases in the loaded buckets.
    len: usize,
    /// Every bucket is here (a full pass): the book may change its bits as it fills.
    whole: bool,
}

impl PrintBook {
    /// An empty book of `2^bits` buckets, of which some will be loaded.
    pub fn new(bits: u32) -> PrintBook {
        PrintBook { bits: bits.clamp(MIN_BITS, MAX_BITS), ..PrintBook::default() }
    }

    /// An empty whole book (the first full pass builds it): it grows its buckets as it fills.
    pub fn whole() -> PrintBook {
        PrintBook { whole: true, ..PrintBook::new(MIN_BITS) }
    }

    /// The buckets changed since they were loaded, now taken as written.
    pub(super) fn take_dirty(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    pub(super) fn blob(&self, bucket: u32) -> Option<&[u8]> {
        self.buckets.get(&bucket).map(Vec::as_slice)
    }

    /// Whether buckets changed since they were loaded.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The bucket of a case reference.
    pub fn bucket_of(&self, case_ref: &str) -> u32 {
        (xxh3_64(case_ref.as_bytes()) >> (64 - self.bits)) as u32
    }

    /// The stored print of a case (in a loaded bucket).
    pub fn get(&self, case_ref: &str) -> Option<u64> {
        let blob = self.buckets.get(&self.bucket_of(case_ref))?;
        entries(blob).find(|(_, c)| *c == case_ref).map(|(print, _)| print)
    }

    /// Sets the print of a case; its bucket must be loaded (or new).
    pub fn set(&mut self, case_ref: &str, print: u64) {
        let bucket = self.bucket_of(case_ref);
        let blob = self.buckets.entry(bucket).or_default();
        if let Some(at) = offset_of(blob, case_ref) {
            if blob[at..at + 8] == print.to_le_bytes() {
                return;
            }
            blob[at..at + 8].copy_from_slice(&print.to_le_bytes());
        } else {
            push_entry(blob, print, case_ref);
            self.len += 1;
        }
        self.dirty.insert(bucket);
        if self.whole && self.len >> self.bits > MAX_LOAD {
            *self = self.resized();
        }
    }

    /// Forgets a case (it left the register).
    pub fn remove(&mut self, case_ref: &str) {
        let bucket = self.bucket_of(case_ref);
        if let Some(blob) = self.buckets.get_mut(&bucket) {
            if let Some(at) = offset_of(blob, case_ref) {
                blob.drain(at..at + 10 + case_ref.len());
                self.len -= 1;
                self.dirty.insert(bucket);
            }
        }
    }

    /// Every case in the loaded buckets.
    pub fn cases(&self) -> impl Iterator<Item = &str> {
        self.buckets.values().flat_map(|blob| entries(blob).map(|(_, c)| c))
    }

    /// The number of cases in the loaded buckets.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A whole book after the cases it lost: sized again when its average cases per bucket fell
    /// far below the target. Returns whether its bits changed (then it is stored whole).
    pub fn settle(&mut self) -> bool {
        if self.whole && self.len >> self.bits < MIN_LOAD && bits_for(self.len) != self.bits {
            *self = self.resized();
            return true;
        }
        false
    }

    /// The same prints in a whole book sized for them, every bucket dirty.
    fn resized(&self) -> PrintBook {
        let mut book = PrintBook { whole: true, ..PrintBook::new(bits_for(self.len)) };
        for blob in self.buckets.values() {
            for (print, case_ref) in entries(blob) {
                let bucket = book.bucket_of(case_ref);
                push_entry(book.buckets.entry(bucket).or_default(), print, case_ref);
            }
        }
        book.len = self.len;
        book.dirty = book.buckets.keys().copied().collect();
        book
    }
}

/// Bits for about [`TARGET_LOAD`] cases a bucket.
fn bits_for(cases: usize) -> u32 {
    let buckets = (cases / TARGET_LOAD).max(1);
    (usize::BITS - buckets.leading_zeros()).clamp(MIN_BITS, MAX_BITS)
}

fn entries(blob: &[u8]) -> impl Iterator<Item = (u64, &str)> {
    let mut rest = blob;
    std::iter::from_fn(move || {
        let (print, len, tail) = split_entry(rest)?;
        let (case_ref, tail) = tail.split_at(len);
        rest = tail;
        Some((print, std::str::from_utf8(case_ref).unwrap_or_default()))
    })
}

/// The print, the length of the case reference and what follows it, or `None` at the end (or at
/// a truncated entry, which [`count_entries`] rejects when a bucket is loaded).
fn split_entry(blob: &[u8]) -> Option<(u64, usize, &[u8])> {
    let print = u64::from_le_bytes(blob.get(..8)?.try_into().ok()?);
    let len = u16::from_le_bytes(blob.get(8..10)?.try_into().ok()?) as usize;
    let tail = &blob[10..];
    (tail.len() >= len).then_some((print, len, tail))
}

fn offset_of(blob: &[u8], case_ref: &str) -> Option<usize> {
    let mut at = 0;
    while let Some((_, len, tail)) = split_entry(&blob[at..]) {
        if &tail[..len] == case_ref.as_bytes() {
            return Some(at);
        }
        at += 10 + len;
    }
    None
}

fn push_entry(blob: &mut Vec<u8>, print: u64, case_ref: &str) {
    // Case references are short (the register's keys); one longer than a u16 is cut, and then
    // never matches, so that its case is recomputed on every pass rather than mistaken.
    let bytes = &case_ref.as_bytes()[..case_ref.len().min(u16::MAX as usize)];
    blob.extend_from_slice(&print.to_le_bytes());
    blob.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    blob.extend_from_slice(bytes);
}

/// The entries of a stored blob, which must be whole entries of UTF-8 case references.
fn count_entries(blob: &[u8]) -> Option<usize> {
    let mut rest = blob;
    let mut n = 0;
    while !rest.is_empty() {
        let (_, len, tail) = split_entry(rest)?;
        std::str::from_utf8(&tail[..len]).ok()?;
        rest = &tail[len..];
        n += 1;
    }
    Some(n)
}

impl StateStore {
    /// The stored prints of `buckets`, or of every bucket when `None`, in a book of `bits`.
    pub async fn load_prints(&self, bits: u32, buckets: Option<&BTreeSet<u32>>) -> Result<PrintBook, StateError> {
        let mut book = PrintBook { whole: buckets.is_none(), ..PrintBook::new(bits) };
        let mut keep = |bucket: i32, blob: Vec<u8>| {
            let Some(cases) = count_entries(&blob) else {
                return Err(StateError::Corrupt { column: "case_prints.prints", value: format!("bucket {bucket}") });
            };
            book.len += cases;
            book.buckets.insert(bucket as u32, blob);
            Ok(())
        };
        match buckets {
            None => with_pool!(&self.pool, p => {
                let mut rows = sqlx::query("SELECT bucket, prints FROM case_prints").fetch(p);
                while let Some(row) = rows.try_next().await.map_err(query_error("reading case prints"))? {
                    keep(column(&row, "bucket")?, column(&row, "prints")?)?;
                }
                Ok::<_, StateError>(())
            })?,
            Some(buckets) => {
                let wanted: Vec<i32> = buckets.iter().map(|b| *b as i32).collect();
                for chunk in wanted.chunks(BATCH_ROWS * 32) {
                    let sql = format!(
                        "SELECT bucket, prints FROM case_prints WHERE bucket IN ({})",
                        self.marks(1, chunk.len())
                    );
                    with_pool!(&self.pool, p => {
                        let mut q = sqlx::query(&sql);
                        for b in chunk {
                            q = q.bind(*b);
                        }
                        for row in q.fetch_all(p).await.map_err(query_error("reading case prints"))? {
                            keep(column(&row, "bucket")?, column(&row, "prints")?)?;
                        }
                        Ok::<_, StateError>(())
                    })?;
                }
            }
        }
        Ok(book)
    }

    /// Writes the buckets changed since they were loaded (an emptied one is deleted).
    pub async fn store_prints(&self, book: &mut PrintBook) -> Result<(), StateError> {
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            write_buckets!(self, &mut *tx, book)?;
            tx.commit().await.map_err(query_error("committing case prints"))
        })
    }

    /// Drops every stored print: the next full pass builds them again (and finds the cases that
    /// left the register by a walk of the stored ones).
    pub async fn forget_prints(&self) -> Result<(), StateError> {
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            sqlx::query("UPDATE poll_state SET print_bits = NULL WHERE id = 1")
                .execute(&mut *tx)
                .await
                .map_err(query_error("dropping case prints"))?;
            sqlx::query("DELETE FROM case_prints").execute(&mut *tx).await.map_err(query_error("dropping case prints"))?;
            tx.commit().await.map_err(query_error("committing case prints"))
        })
    }

    /// Replaces every stored print by `book` and records its bits: the book is whole (built or
    /// rebuilt by a full pass).
    pub async fn replace_prints(&self, book: &mut PrintBook) -> Result<(), StateError> {
        book.dirty = book.buckets.keys().copied().collect();
        let bits = book.bits as i32;
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            sqlx::query("DELETE FROM case_prints").execute(&mut *tx).await.map_err(query_error("replacing case prints"))?;
            write_buckets!(self, &mut *tx, book)?;
            sqlx::query("UPDATE poll_state SET print_bits = $1 WHERE id = 1")
                .bind(bits)
                .execute(&mut *tx)
                .await
                .map_err(query_error("recording the case prints' size"))?;
            tx.commit().await.map_err(query_error("committing case prints"))
        })
    }
}

/// Writes the dirty buckets of a book in the open transaction `$tx` (either engine's), and marks
/// them clean.
macro_rules! write_buckets {
    ($store:expr, $tx:expr, $book:expr) => {{
        let book: &mut PrintBook = $book;
        let (kept, emptied): (Vec<u32>, Vec<u32>) =
            book.take_dirty().into_iter().partition(|b| book.blob(*b).is_some_and(|blob| !blob.is_empty()));
        let mut result = Ok(());
        for chunk in kept.chunks(BATCH_ROWS * 8) {
            let values: Vec<String> = (0..chunk.len()).map(|i| format!("({})", $store.marks(2 * i + 1, 2))).collect();
            let sql = format!(
                "INSERT INTO case_prints (bucket, prints) VALUES {} \
                 ON CONFLICT (bucket) DO UPDATE SET prints = excluded.prints",
                values.join(",")
            );
            let mut q = sqlx::query(&sql);
            for b in chunk {
                q = q.bind(*b as i32).bind(book.blob(*b).unwrap_or_default());
            }
            if let Err(e) = q.execute($tx).await {
                result = Err(query_error("writing case prints")(e));
                break;
            }
        }
        if result.is_ok() {
            for chunk in emptied.chunks(BATCH_ROWS * 32) {
                let sql = format!("DELETE FROM case_prints WHERE bucket IN ({})", $store.marks(1, chunk.len()));
                let mut q = sqlx::query(&sql);
                for b in chunk {
                    q = q.bind(*b as i32);
                }
                if let Err(e) = q.execute($tx).await {
                    result = Err(query_error("deleting case prints")(e));
                    break;
                }
            }
        }
        result
    }};
}
pub(crate) use write_buckets;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_book_sets_replaces_and_removes_prints() {
        let mut book = PrintBook::new(4);
        for i in 0..100 {
            book.set(&format!("CASE-{i}"), i + 1);
        }
        assert_eq!(book.len(), 100);
        assert_eq!(book.get("CASE-7"), Some(8));
        book.set("CASE-7", 70);
        assert_eq!(book.get("CASE-7"), Some(70));
        assert_eq!(book.len(), 100);
        book.remove("CASE-7");
        assert_eq!(book.get("CASE-7"), None);
        assert_eq!(book.get("CASE-8"), Some(9));
        assert_eq!(book.get("CASE-"), None, "a prefix of a stored reference is another case");
        assert_eq!(book.len(), 99);
        assert_eq!(book.buckets.values().map(|blob| count_entries(blob).unwrap()).sum::<usize>(), 99);
    }

    #[test]
    fn a_whole_book_grows_its_buckets_as_it_fills_and_shrinks_them_when_emptied() {
        let mut book = PrintBook::whole();
        for i in 0..5000 {
            book.set(&format!("CASE-{i}"), i);
        }
        assert!(book.bits() > MIN_BITS, "grew from {MIN_BITS} bits to {}", book.bits());
        assert!(book.len() >> book.bits() <= MAX_LOAD);
        assert_eq!(book.len(), 5000);
        assert_eq!(book.get("CASE-4321"), Some(4321));
        assert!(!book.settle(), "full enough");
        for i in 100..5000 {
            book.remove(&format!("CASE-{i}"));
        }
        assert!(book.settle(), "100 cases in {} buckets", 1 << book.bits());
        assert_eq!((book.len(), book.bits()), (100, MIN_BITS));
        assert_eq!(book.get("CASE-42"), Some(42));
        assert_eq!(book.get("CASE-420"), None);
        assert_eq!(bits_for(1_000_000), 16);
        assert_eq!(bits_for(0), MIN_BITS);
        let mut part = PrintBook::new(4);
        for i in 0..5000 {
            part.set(&format!("CASE-{i}"), i);
        }
        assert_eq!(part.bits(), 4, "a partly loaded book keeps the stored bits");
    }

    #[test]
    fn a_truncated_or_undecodable_blob_is_refused() {
        let mut blob = Vec::new();
        push_entry(&mut blob, 42, "ABC-1");
        assert_eq!(count_entries(&blob), Some(1));
        assert_eq!(count_entries(&blob[..blob.len() - 1]), None);
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert_eq!(count_entries(&bad), None);
    }
}
