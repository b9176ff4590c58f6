//! Per-case fingerprints: for every case whose deadlines are stored, the print (a 64-bit hash)
//! of the register row and settings they were computed from. A poll compares a row's print with
//! the stored one and computes and writes only the cases that differ, so that an unchanged
//! register costs a read and no statement per case (issue "Performance at national scale").
//!
//! The prints live in buckets chosen by a hash of the case reference: `2^bits` rows of
//! `case_prints`, each holding the (print, case reference) pairs of its cases in one blob, about
//! 64 cases a bucket. A full pass loads every print in a few thousand rows (a row per case would
//! cost a row's round trip each, more than the register read itself). An incremental poll reads
//! the buckets of the rows it reads, but writes the prints it changed as one row appended to
//! `case_print_log` per transaction (a thousand changed rows rewrote about a thousand buckets
//! scattered over the table: a page each); it reads the whole log first, whose prints stand over
//! the buckets' (the store keeps the log its last poll read, [`KeptLog`], and decodes only the
//! rows that differ from it). The full pass (and a poll that finds more than [`LOG_FOLD`] entries) folds the
//! log into the buckets and deletes it, in one transaction. `poll_state.print_bits` is NULL until the first
//! full pass has built the book, which from then on also lists every case with stored deadlines
//! (the cases a full pass did not read left the register).
//!
//! The placements view keeps its prints the same way on a shelf of its own ([`Shelf`]: its own
//! tables and size), so that a steady full pass skips an unchanged placement as it skips an
//! unchanged case.
//!
//! A bucket is stored as one blob (see `Bucket::encode`) and held as 16-byte entries beside its
//! references, so that a lookup compares 4-byte tags (the low bytes of the case reference's XXH3)
//! in a few cache lines and reads a reference only where a tag matches. A bucket's entries stand
//! in the order their cases were first read, and a pass reads the register in much the same
//! order as the one before, so each bucket keeps a cursor after the entry found last and a lookup
//! looks there first: a steady full pass then finds nearly every case at its bucket's cursor,
//! walking each bucket from end to end instead of scanning half of it a case.

use std::collections::{BTreeSet, HashMap};

use futures_util::TryStreamExt;
use xxhash_rust::xxh3::xxh3_64;

use super::{column, query_error, read_file_rows, with_pool, Cells, StateError, StateStore, BATCH_ROWS};

/// The print stored for a case whose row was seen but never understood (a broken row): it lists
/// the case (so that a full pass notices when it leaves the register) and matches no row.
pub const NO_PRINT: u64 = 0;

/// Entries of the print log beyond which an incremental poll folds it into the buckets before it
/// reads (a poll of 1 000 changed rows adds 1 000; each poll loads the whole log).
const LOG_FOLD: usize = 16_384;

/// Cases of a part of the buckets that [`StateStore::store_appended_prints`] builds at a time.
const FOLD_PART_CASES: usize = 131_072;

/// Cases per bucket aimed at when a whole book is sized; it grows when the average passes
/// `MAX_LOAD` and shrinks when it falls below `MIN_LOAD`.
const TARGET_LOAD: usize = 64;
const MIN_LOAD: usize = 16;
const MAX_LOAD: usize = 128;
const MIN_BITS: u32 = 4;
const MAX_BITS: u32 = 24;
/// The longest case reference a print is kept under.
const LONGEST_REF: usize = u16::MAX as usize;

/// Which view's prints a book holds: each view keeps its own tables and bucket size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shelf {
    /// The cases view: `case_prints`, `case_print_log`, `poll_state.print_bits`.
    #[default]
    Cases,
    /// The placements view (migration 0012): `placement_prints`, `placement_print_log`,
    /// `poll_state.placement_print_bits`.
    Placements,
}

impl Shelf {
    /// The table of its buckets.
    pub(super) fn buckets(self) -> &'static str {
        match self {
            Shelf::Cases => "case_prints",
            Shelf::Placements => "placement_prints",
        }
    }

    /// The table of its log.
    pub(super) fn log(self) -> &'static str {
        match self {
            Shelf::Cases => "case_print_log",
            Shelf::Placements => "placement_print_log",
        }
    }

    /// The column of `poll_state` that holds its bits.
    pub(super) fn bits_column(self) -> &'static str {
        match self {
            Shelf::Cases => "print_bits",
            Shelf::Placements => "placement_print_bits",
        }
    }

    /// A stored blob that does not decode, named for an error.
    fn corrupt(self, log: bool, at: String) -> StateError {
        let column = match (self, log) {
            (Shelf::Cases, false) => "case_prints.prints",
            (Shelf::Cases, true) => "case_print_log.prints",
            (Shelf::Placements, false) => "placement_prints.prints",
            (Shelf::Placements, true) => "placement_print_log.prints",
        };
        StateError::Corrupt { column, value: at }
    }

    /// Row `seq` of the print log, decoded.
    fn log_row(self, seq: i64, blob: &[u8]) -> Result<Bucket, StateError> {
        Bucket::decode(blob).ok_or_else(|| self.corrupt(true, format!("row {seq}")))
    }
}

/// One case of a bucket: 16 bytes, so that a lookup scans the tags of a bucket in a few cache
/// lines and touches the reference only where a tag matches.
#[derive(Debug, Clone, Copy)]
struct Entry {
    print: u64,
    /// The low 4 bytes of the case reference's XXH3.
    tag: u32,
    /// Where the case reference ends in the bucket's `refs`; the high bit marks (in memory only)
    /// a case this pass has read.
    end: u32,
}

const READ: u32 = 1 << 31;

/// The cases of one bucket: their entries, and their references one after another.
#[derive(Debug, Default, Clone)]
struct Bucket {
    entries: Vec<Entry>,
    refs: Vec<u8>,
    /// Where the next lookup looks first: after the entry found last (a hint, any value is safe).
    cursor: usize,
}

impl Bucket {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn end(&self, i: usize) -> usize {
        (self.entries[i].end & !READ) as usize
    }

    fn ref_bytes(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        &self.refs[start..self.end(i)]
    }

    /// A stored reference (UTF-8: checked when the bucket was decoded, or pushed as a `str`).
    fn case_ref(&self, i: usize) -> &str {
        std::str::from_utf8(self.ref_bytes(i)).unwrap_or_default()
    }

    fn is_read(&self, i: usize) -> bool {
        self.entries[i].end & READ != 0
    }

    fn mark_read(&mut self, i: usize) {
        self.entries[i].end |= READ;
    }

    /// The entry of a case, if any: the one at the cursor when it is the case's, otherwise the
    /// first whose tag and reference match.
    fn find(&self, case_ref: &str, tag: u32) -> Option<usize> {
        let at = self.cursor;
        if self.entries.get(at).is_some_and(|e| e.tag == tag) && self.ref_bytes(at) == case_ref.as_bytes() {
            return Some(at);
        }
        let mut from = 0;
        while let Some(i) = self.entries[from..].iter().position(|e| e.tag == tag) {
            if self.ref_bytes(from + i) == case_ref.as_bytes() {
                return Some(from + i);
            }
            from += i + 1;
        }
        None
    }

    fn push(&mut self, case_ref: &str, tag: u32, print: u64, read: bool) {
        self.refs.extend_from_slice(case_ref.as_bytes());
        let end = self.refs.len() as u32 | if read { READ } else { 0 };
        self.entries.push(Entry { print, tag, end });
    }

    fn remove(&mut self, i: usize) {
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        let end = self.end(i);
        self.refs.drain(start..end);
        for e in &mut self.entries[i + 1..] {
            e.end -= (end - start) as u32;
        }
        self.entries.remove(i);
    }

    /// The stored form: the number of cases (4 bytes), then per case its print (8), tag (4) and
    /// the length of its reference (2), then the references; little-endian throughout.
    fn encode(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(4 + self.len() * 14 + self.refs.len());
        blob.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for (i, e) in self.entries.iter().enumerate() {
            blob.extend_from_slice(&e.print.to_le_bytes());
            blob.extend_from_slice(&e.tag.to_le_bytes());
            blob.extend_from_slice(&(self.ref_bytes(i).len() as u16).to_le_bytes());
        }
        blob.extend_from_slice(&self.refs);
        blob
    }

    /// The bucket a stored blob holds; `None` for one that is cut short, holds more, or holds a
    /// reference that is not UTF-8.
    fn decode(blob: &[u8]) -> Option<Bucket> {
        let n = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let heads = blob.get(4..4 + n.checked_mul(14)?)?;
        let refs = &blob[4 + n * 14..];
        let mut entries = Vec::with_capacity(n);
        let mut end = 0usize;
        for head in heads.chunks_exact(14) {
            end += u16::from_le_bytes(head[12..14].try_into().ok()?) as usize;
            entries.push(Entry {
                print: u64::from_le_bytes(head[..8].try_into().ok()?),
                tag: u32::from_le_bytes(head[8..12].try_into().ok()?),
                end: u32::try_from(end).ok().filter(|e| e & READ == 0)?,
            });
        }
        (end == refs.len() && std::str::from_utf8(refs).is_ok()).then(|| Bucket {
            entries,
            refs: refs.to_vec(),
            cursor: 0,
        })
    }
}

/// The prints of some or all buckets, with the buckets changed since they were loaded, and which
/// cases the pass has read.
#[derive(Debug, Default)]
pub struct PrintBook {
    shelf: Shelf,
    bits: u32,
    /// `2^bits` buckets, by number; empty when empty or not loaded.
    buckets: Vec<Bucket>,
    /// Which buckets are here (all of them in a whole book).
    loaded: Vec<bool>,
    dirty: BTreeSet<u32>,
    /// Cases in the loaded buckets.
    len: usize,
    /// Every bucket is here (a full pass): the book may change its bits as it fills.
    whole: bool,
    /// An incremental poll's book: the prints of the log, which stand over the buckets', and
    /// the entries it sets, appended to the log instead of rewriting their buckets.
    log: Option<Box<PrintLog>>,
    /// A first full pass's book that only appends to the log (see [`PrintBook::appending`]).
    appending: bool,
}

/// Prints by reference. Every poll reads the whole log (up to [`LOG_FOLD`] entries a shelf), so
/// its map is keyed by boxed references hashed with foldhash: with `String` keys and SipHash,
/// opening the logs took 4.7 % of the benchmark's samples over its polls at 1 000 000 cases
/// (BENCHMARKS.md, "The cases' poll at 1 000 000 on SQLite").
type LogPrints = HashMap<Box<str>, u64, foldhash::fast::RandomState>;

/// The prints of `case_print_log` (the latest of each case), and the ones set since it was read.
#[derive(Debug, Default)]
struct PrintLog {
    /// The log as it was read; given back to the store's [`KeptLogs`] when the book is dropped
    /// (`keep`), for the next poll.
    read: KeptLog,
    /// Set by this poll, over `read`'s: kept apart, since their transaction may yet fail.
    set: LogPrints,
    /// Set since the log was read or last written: its next row.
    pending: Bucket,
    /// Where `read` goes when the book is dropped (an incremental poll's book).
    keep: Option<(KeptLogs, Shelf)>,
    /// Rows of `read` decoded when it was opened (the others were kept).
    #[cfg(test)]
    decoded: usize,
}

impl PrintLog {
    /// The latest print of a case in the log, this poll's included.
    fn get(&self, case_ref: &str) -> Option<u64> {
        self.set.get(case_ref).or_else(|| self.read.prints.get(case_ref)).copied()
    }
}

impl Drop for PrintLog {
    fn drop(&mut self) {
        if let Some((kept, shelf)) = self.keep.take() {
            kept.put(shelf, std::mem::take(&mut self.read));
        }
    }
}

/// A shelf's print log as a poll read it: its rows, byte for byte, and the latest print of each
/// case in them. The store keeps it from one poll to the next ([`KeptLogs`]), so that a poll
/// decodes only the rows written since: opening the two logs (up to [`LOG_FOLD`] entries each)
/// and dropping their maps took a fifth of a poll's own thread at 1 000 000 cases
/// (BENCHMARKS.md). It stands for the log only while the log begins with the same rows
/// ([`StateStore::open_print_log`] compares them): rows are only appended and deleted, never
/// changed, so any change (a fold, prints forgotten, another process's rows) shows there.
#[derive(Debug, Default)]
struct KeptLog {
    /// The rows read, in their order: number and blob.
    rows: Vec<(i64, Vec<u8>)>,
    /// Entries in the rows (the same case's in several rows too).
    entries: usize,
    prints: LogPrints,
    /// Rows decoded into it since it was last opened.
    decoded: usize,
}

impl KeptLog {
    /// The log of its first `rows` rows: itself when that is all of them, else built anew from
    /// them.
    fn prefix(&mut self, shelf: Shelf, rows: usize) -> Result<KeptLog, StateError> {
        if rows == self.rows.len() {
            return Ok(std::mem::take(self));
        }
        let mut log = KeptLog::default();
        for (seq, blob) in self.rows.drain(..rows) {
            log.take(shelf, seq, blob)?;
        }
        Ok(log)
    }

    /// Takes in a row read after the others.
    fn take(&mut self, shelf: Shelf, seq: i64, blob: Vec<u8>) -> Result<(), StateError> {
        let bucket = shelf.log_row(seq, &blob)?;
        self.entries += bucket.len();
        self.prints.reserve(bucket.len());
        for i in 0..bucket.len() {
            self.prints.insert(bucket.case_ref(i).into(), bucket.entries[i].print);
        }
        self.rows.push((seq, blob));
        self.decoded += 1;
        Ok(())
    }
}

/// Each shelf's [`KeptLog`], held by a store (its clones share it) between its polls.
#[derive(Debug, Default, Clone)]
pub(super) struct KeptLogs(std::sync::Arc<std::sync::Mutex<[Option<KeptLog>; 2]>>);

impl KeptLogs {
    fn take(&self, shelf: Shelf) -> Option<KeptLog> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())[shelf as usize].take()
    }

    fn put(&self, shelf: Shelf, log: KeptLog) {
        self.0.lock().unwrap_or_else(|e| e.into_inner())[shelf as usize] = Some(log);
    }
}

impl PrintBook {
    /// A book of the cases' prints in `2^bits` buckets, none loaded yet.
    pub fn new(bits: u32) -> PrintBook {
        PrintBook::on(Shelf::Cases, bits)
    }

    /// A book of `shelf`'s prints in `2^bits` buckets, none loaded yet.
    pub fn on(shelf: Shelf, bits: u32) -> PrintBook {
        let bits = bits.clamp(MIN_BITS, MAX_BITS);
        PrintBook {
            shelf,
            bits,
            buckets: vec![Bucket::default(); 1 << bits],
            loaded: vec![false; 1 << bits],
            ..PrintBook::default()
        }
    }

    /// An empty whole book of `shelf` (the first full pass builds it): it grows its buckets as
    /// it fills.
    pub fn whole(shelf: Shelf) -> PrintBook {
        PrintBook::whole_of(shelf, MIN_BITS)
    }

    /// The book of a first full pass on a state that holds no case's deadlines: every case is
    /// new, so it looks nothing up and holds no bucket; what it sets goes to the print log with
    /// each chunk's deadlines (its next row), and
    /// [`StateStore::store_appended_prints`] makes the buckets of the log at the end, a part of
    /// them at a time. A whole book held every print until the end (about 40 MB at a million
    /// cases).
    pub fn appending(shelf: Shelf) -> PrintBook {
        PrintBook { log: Some(Box::default()), appending: true, ..PrintBook::on(shelf, MIN_BITS) }
    }

    fn whole_of(shelf: Shelf, bits: u32) -> PrintBook {
        let mut book = PrintBook::on(shelf, bits);
        book.loaded.fill(true);
        book.whole = true;
        book
    }

    /// The buckets changed since they were loaded, now taken as written.
    pub(super) fn take_dirty(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// A bucket as it is stored.
    pub(super) fn stored_blob(&self, bucket: u32) -> Vec<u8> {
        self.buckets[bucket as usize].encode()
    }

    pub(super) fn has_cases(&self, bucket: u32) -> bool {
        self.buckets[bucket as usize].len() > 0
    }

    /// Whether buckets changed since they were loaded.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.log.as_ref().is_some_and(|log| log.pending.len() > 0)
    }

    /// The entries set since the log was read or last written, as the log's next row (`None`
    /// when there are none, or the book keeps no log), now taken as written.
    pub(super) fn take_log_row(&mut self) -> Option<Vec<u8>> {
        let log = self.log.as_mut().filter(|log| log.pending.len() > 0)?;
        Some(std::mem::take(&mut log.pending).encode())
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Which view's prints these are.
    pub fn shelf(&self) -> Shelf {
        self.shelf
    }

    /// Rows of the print log this book's opening decoded: the others were the store's log as
    /// its last poll read it ([`StateStore::open_print_log`]).
    #[cfg(test)]
    fn log_rows_decoded(&self) -> usize {
        self.log.as_ref().map_or(0, |log| log.decoded)
    }

    /// Whether this is an incremental poll's book that appends what it sets to the print log.
    pub fn keeps_log(&self) -> bool {
        self.log.is_some()
    }

    /// The buckets changed since they were loaded or last written.
    pub fn dirty_buckets(&self) -> usize {
        self.dirty.len()
    }

    /// Forgets the loaded buckets that are not dirty: they are read again when needed. An
    /// incremental poll that writes its buckets directly (a bulk update) calls this after each
    /// write, so that it holds only the buckets it has changed since.
    pub fn unload_clean(&mut self) {
        for b in 0..self.buckets.len() {
            if self.loaded[b] && !self.dirty.contains(&(b as u32)) {
                self.len -= self.buckets[b].len();
                self.buckets[b] = Bucket::default();
                self.loaded[b] = false;
            }
        }
    }

    /// The bucket of a case reference.
    pub fn bucket_of(&self, case_ref: &str) -> u32 {
        hash_of(case_ref, self.bits).0 as u32
    }

    /// The buckets of these cases that are not loaded yet.
    /// A case whose print the log holds needs no bucket.
    pub fn missing<'a>(&self, case_refs: impl Iterator<Item = &'a str>) -> BTreeSet<u32> {
        case_refs
            .filter(|c| self.log.as_ref().is_none_or(|log| log.get(c).is_none()))
            .map(|c| self.bucket_of(c))
            .filter(|b| !self.loaded[*b as usize])
            .collect()
    }

    /// The stored print of a case (in the log or a loaded bucket).
    pub fn get(&self, case_ref: &str) -> Option<u64> {
        if let Some(print) = self.log.as_ref().and_then(|log| log.get(case_ref)) {
            return Some(print);
        }
        let (b, tag) = hash_of(case_ref, self.bits);
        let bucket = &self.buckets[b];
        bucket.find(case_ref, tag).map(|i| bucket.entries[i].print)
    }

    /// The stored print of a case, which is marked as read by this pass.
    pub fn read(&mut self, case_ref: &str) -> Option<u64> {
        // A book with a log is an incremental poll's, which lists no unread cases: no marks.
        if let Some(print) = self.log.as_ref().and_then(|log| log.get(case_ref)) {
            return Some(print);
        }
        let (b, tag) = hash_of(case_ref, self.bits);
        let bucket = &mut self.buckets[b];
        let i = bucket.find(case_ref, tag)?;
        bucket.mark_read(i);
        bucket.cursor = i + 1;
        Some(bucket.entries[i].print)
    }

    /// Whether the stored print of a case is `print`; a stored case is marked as read by this
    /// pass either way. An entry whose tag and print both match is taken as the case's without
    /// comparing references: the print is taken over the whole row, its reference included.
    pub fn read_unchanged(&mut self, case_ref: &str, print: u64) -> bool {
        // As `read`: the log stands over the bucket (whose print for the case may be older).
        if let Some(logged) = self.log.as_ref().and_then(|log| log.get(case_ref)) {
            return logged == print;
        }
        let (b, tag) = hash_of(case_ref, self.bits);
        let bucket = &mut self.buckets[b];
        let matches = |e: &Entry| e.tag == tag && e.print == print;
        let at = bucket.cursor;
        let found = match bucket.entries.get(at) {
            Some(e) if matches(e) => Some(at),
            _ => bucket.entries.iter().position(matches),
        };
        match found.or_else(|| bucket.find(case_ref, tag)) {
            Some(i) => {
                bucket.mark_read(i);
                bucket.cursor = i + 1;
                found.is_some()
            }
            None => false,
        }
    }

    /// Sets the print of a case, marked as read; its bucket must be loaded.
    pub fn set(&mut self, case_ref: &str, print: u64) {
        // Case references are short (the register's keys); a longer one is cut, and then never
        // matches, so that its case is computed on every pass rather than mistaken for another.
        let case_ref = &case_ref[..floor_char_boundary(case_ref, LONGEST_REF)];
        let (b, tag) = hash_of(case_ref, self.bits);
        if self.appending {
            if let Some(log) = self.log.as_mut() {
                log.pending.push(case_ref, tag, print, false);
                self.len += 1;
            }
            return;
        }
        if self.log.is_some() {
            let stored = self.get(case_ref);
            if let Some(log) = self.log.as_mut().filter(|_| stored != Some(print)) {
                log.set.insert(case_ref.into(), print);
                log.pending.push(case_ref, tag, print, false);
            }
            return;
        }
        let bucket = &mut self.buckets[b];
        match bucket.find(case_ref, tag) {
            Some(i) => {
                bucket.mark_read(i);
                if bucket.entries[i].print == print {
                    return;
                }
                bucket.entries[i].print = print;
            }
            None => {
                bucket.push(case_ref, tag, print, true);
                self.len += 1;
            }
        }
        self.dirty.insert(b as u32);
        if self.whole && self.len >> self.bits > MAX_LOAD {
            *self = self.resized();
        }
    }

    /// Lists a case whose row was read but not understood, with a print no row has; one listed
    /// already keeps the print of its last good row. Either way it is marked as read.
    pub fn list(&mut self, case_ref: &str) {
        if self.read(case_ref).is_none() {
            self.set(case_ref, NO_PRINT);
        }
    }

    /// Forgets a case (it left the register).
    pub fn remove(&mut self, case_ref: &str) {
        let (b, tag) = hash_of(case_ref, self.bits);
        let bucket = &mut self.buckets[b];
        if let Some(i) = bucket.find(case_ref, tag) {
            bucket.remove(i);
            self.len -= 1;
            self.dirty.insert(b as u32);
        }
    }

    /// The cases in the loaded buckets that this pass has not read.
    pub fn unread(&self) -> Vec<String> {
        let mut out = Vec::new();
        for bucket in &self.buckets {
            for i in (0..bucket.len()).filter(|i| !bucket.is_read(*i)) {
                out.push(bucket.case_ref(i).to_string());
            }
        }
        out
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

    /// The same prints (and marks) in a whole book sized for them, every bucket dirty.
    fn resized(&self) -> PrintBook {
        let mut book = PrintBook::whole_of(self.shelf, bits_for(self.len));
        for bucket in &self.buckets {
            for i in 0..bucket.len() {
                let case_ref = bucket.case_ref(i);
                let b = book.bucket_of(case_ref) as usize;
                let Entry { print, tag, .. } = bucket.entries[i];
                book.buckets[b].push(case_ref, tag, print, bucket.is_read(i));
            }
        }
        book.len = self.len;
        book.dirty = (0..1u32 << book.bits).filter(|b| book.has_cases(*b)).collect();
        book
    }
}

/// Bits for about [`TARGET_LOAD`] cases a bucket.
fn bits_for(cases: usize) -> u32 {
    let buckets = (cases / TARGET_LOAD).max(1);
    (usize::BITS - buckets.leading_zeros()).clamp(MIN_BITS, MAX_BITS)
}

/// The bucket of a case reference under `bits`, and its tag.
fn hash_of(case_ref: &str, bits: u32) -> (usize, u32) {
    let h = xxh3_64(case_ref.as_bytes());
    ((h >> (64 - bits)) as usize, h as u32)
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len())).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0)
}

impl StateStore {
    /// Every stored print of `shelf`, in a whole book of `bits` (the log folded into the buckets
    /// first).
    pub async fn load_prints(&self, shelf: Shelf, bits: u32) -> Result<PrintBook, StateError> {
        self.fold_print_log(shelf, bits).await?;
        let mut book = PrintBook::whole_of(shelf, bits);
        let sql = format!("SELECT bucket, prints FROM {}", shelf.buckets());
        with_pool!(&self.pool, p => {
            let mut rows = sqlx::query(&sql).fetch(p);
            while let Some(row) = rows.try_next().await.map_err(query_error("reading prints"))? {
                keep_bucket(&mut book, column(&row, "bucket")?, column(&row, "prints")?)?;
            }
            Ok::<_, StateError>(())
        })?;
        Ok(book)
    }

    /// An incremental poll's book of `shelf` in `2^bits` buckets, none loaded yet, holding the
    /// print log (folded into the buckets first when it has grown past [`LOG_FOLD`] entries).
    /// The log as the store's last poll read it ([`KeptLog`]) stands for the log's leading rows
    /// when they are all of its rows, and only the rows after them are decoded; when some of its
    /// rows are no longer there or differ (a fold, another process's rows, rows committed out of
    /// order on PostgreSQL), the map is built again from every row read.
    pub async fn open_print_log(&self, shelf: Shelf, bits: u32) -> Result<PrintBook, StateError> {
        let mut kept = self.kept_logs.take(shelf).unwrap_or_default();
        // The rows read so far that are the kept log's first ones, in order; from the first row
        // that is not, the log as read (`read`).
        let mut same = 0;
        let mut read: Option<KeptLog> = None;
        self.read_print_log(shelf, |seq, blob| {
            let read = match &mut read {
                Some(read) => read,
                None if kept.rows.get(same).is_some_and(|(s, b)| *s == seq && *b == blob) => {
                    same += 1;
                    return Ok(());
                }
                None => read.insert(kept.prefix(shelf, same)?),
            };
            read.take(shelf, seq, blob)
        })
        .await?;
        let mut read = match read {
            Some(read) => read,
            None => kept.prefix(shelf, same)?,
        };
        let decoded = std::mem::take(&mut read.decoded);
        tracing::debug!(shelf = ?shelf, rows = read.rows.len(), decoded, "print log opened");
        if read.entries > LOG_FOLD {
            self.fold_print_log(shelf, bits).await?;
            read = KeptLog::default();
        }
        let mut book = PrintBook::on(shelf, bits);
        book.log = Some(Box::new(PrintLog {
            read,
            set: LogPrints::default(),
            pending: Bucket::default(),
            keep: Some((self.kept_logs.clone(), shelf)),
            #[cfg(test)]
            decoded,
        }));
        Ok(book)
    }

    /// Hands each row of `shelf`'s print log (its number and blob) to `each`, in the order they
    /// were written; returns the last row's number.
    async fn read_print_log(
        &self,
        shelf: Shelf,
        mut each: impl FnMut(i64, Vec<u8>) -> Result<(), StateError>,
    ) -> Result<Option<i64>, StateError> {
        let mut last = None;
        let sql = format!("SELECT seq, prints FROM {} ORDER BY seq", shelf.log());
        with_pool!(&self.pool, p => {
            let mut rows = sqlx::query(&sql).fetch(p);
            while let Some(row) = rows.try_next().await.map_err(query_error("reading a print log"))? {
                let seq: i64 = column(&row, "seq")?;
                each(seq, column(&row, "prints")?)?;
                last = Some(seq);
            }
            Ok::<_, StateError>(())
        })?;
        Ok(last)
    }

    /// Writes `shelf`'s print log into its buckets of `2^bits` and deletes it, in one
    /// transaction.
    pub async fn fold_print_log(&self, shelf: Shelf, bits: u32) -> Result<(), StateError> {
        let mut entries: Vec<(String, u64)> = Vec::new();
        let read = self.read_print_log(shelf, |seq, blob| {
            let bucket = shelf.log_row(seq, &blob)?;
            entries.extend((0..bucket.len()).map(|i| (bucket.case_ref(i).to_string(), bucket.entries[i].print)));
            Ok(())
        });
        let Some(last) = read.await? else {
            return Ok(());
        };
        let mut book = PrintBook::on(shelf, bits);
        let buckets = book.missing(entries.iter().map(|(c, _)| c.as_str()));
        self.load_buckets(&mut book, &buckets).await?;
        for (case_ref, print) in &entries {
            book.set(case_ref, *print);
        }
        let delete = format!("DELETE FROM {} WHERE seq <= $1", shelf.log());
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            write_buckets!(self, &mut *tx, &mut book)?;
            sqlx::query(&delete)
                .bind(last)
                .execute(&mut *tx)
                .await
                .map_err(query_error("folding a print log"))?;
            tx.commit().await.map_err(query_error("committing prints"))
        })
    }

    /// Makes the buckets of an appending book's log (a first full pass that set `cases` prints),
    /// sized for them, and records their bits, in one transaction: a part of the buckets at a
    /// time (about [`FOLD_PART_CASES`] cases), each from a read of the whole log, the latest
    /// print of a case standing. `listed_elsewhere` are cases whose deadlines the pass stored
    /// without reading their rows (another case of their child changed): those the log does not
    /// list left the register during the pass, and are withdrawn, as a whole book's walk of the
    /// stored cases would. Returns how many deadlines were withdrawn.
    pub async fn store_appended_prints(
        &self,
        shelf: Shelf,
        cases: usize,
        listed_elsewhere: &BTreeSet<String>,
    ) -> Result<u64, StateError> {
        let bits = bits_for(cases);
        let parts = (cases / FOLD_PART_CASES).max(1).next_power_of_two().min(1 << bits);
        let shift = bits - parts.trailing_zeros();
        let read_seqs = format!("SELECT seq FROM {} ORDER BY seq", shelf.log());
        let read_row = format!("SELECT prints FROM {} WHERE seq = $1", shelf.log());
        let drop_buckets = format!("DELETE FROM {}", shelf.buckets());
        let drop_log = format!("DELETE FROM {}", shelf.log());
        let record_bits = format!("UPDATE poll_state SET {} = $1 WHERE id = 1", shelf.bits_column());
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            let seqs: Vec<i64> = sqlx::query_scalar(&read_seqs)
                .fetch_all(&mut *tx)
                .await
                .map_err(query_error("reading a print log"))?;
            sqlx::query(&drop_buckets).execute(&mut *tx).await.map_err(query_error("replacing prints"))?;
            let mut vanished = Vec::new();
            for part in 0..parts {
                let mut book = PrintBook::on(shelf, bits);
                for seq in &seqs {
                    let blob: Vec<u8> = sqlx::query_scalar(&read_row)
                        .bind(seq)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(query_error("reading a print log"))?;
                    let logged = shelf.log_row(*seq, &blob)?;
                    for i in 0..logged.len() {
                        let case_ref = logged.case_ref(i);
                        if book.bucket_of(case_ref) as usize >> shift == part {
                            book.set(case_ref, logged.entries[i].print);
                        }
                    }
                }
                vanished.extend(
                    listed_elsewhere
                        .iter()
                        .filter(|c| book.bucket_of(c) as usize >> shift == part && book.get(c).is_none())
                        .cloned(),
                );
                write_buckets!(self, &mut *tx, &mut book)?;
            }
            let withdrawn = withdraw_in!(self, &mut *tx, &vanished)?;
            sqlx::query(&drop_log).execute(&mut *tx).await.map_err(query_error("replacing prints"))?;
            sqlx::query(&record_bits)
                .bind(bits as i32)
                .execute(&mut *tx)
                .await
                .map_err(query_error("recording the prints' size"))?;
            tx.commit().await.map_err(query_error("committing prints"))?;
            Ok(withdrawn)
        })
    }

    /// Loads the stored prints of `buckets` into `book`.
    pub async fn load_buckets(&self, book: &mut PrintBook, buckets: &BTreeSet<u32>) -> Result<(), StateError> {
        let wanted: Vec<i32> = buckets.iter().map(|b| *b as i32).collect();
        if let (Some(path), false) = (&self.sqlite_file, wanted.is_empty()) {
            // Read by rusqlite (see `read_file_rows`): up to a bucket a row read, 1 000 a
            // statement; decoded here, where the book is.
            let select = format!("SELECT bucket, prints FROM {} WHERE bucket IN", book.shelf.buckets());
            let rows = read_file_rows(path.clone(), "reading prints", select, wanted, Vec::new(), |rows, row| {
                rows.push((row.cell::<i32>("bucket")?, row.cell::<Vec<u8>>("prints")?));
                Ok(())
            })
            .await?;
            for (bucket, blob) in rows {
                keep_bucket(book, bucket, blob)?;
            }
        } else {
            self.load_buckets_through_pool(book, &wanted).await?;
        }
        for b in buckets {
            book.loaded[*b as usize] = true;
        }
        Ok(())
    }

    async fn load_buckets_through_pool(&self, book: &mut PrintBook, wanted: &[i32]) -> Result<(), StateError> {
        for chunk in wanted.chunks(BATCH_ROWS * 32) {
            let sql = format!(
                "SELECT bucket, prints FROM {} WHERE bucket IN ({})",
                book.shelf.buckets(),
                self.marks(1, chunk.len())
            );
            with_pool!(&self.pool, p => {
                let mut q = sqlx::query(&sql).persistent(false);
                for b in chunk {
                    q = q.bind(*b);
                }
                for row in q.fetch_all(p).await.map_err(query_error("reading prints"))? {
                    keep_bucket(book, column(&row, "bucket")?, column(&row, "prints")?)?;
                }
                Ok::<_, StateError>(())
            })?;
        }
        Ok(())
    }

    /// Writes the buckets changed since they were loaded (an emptied one is deleted), and
    /// withdraws the deadlines of `vanished` in the same transaction.
    pub async fn store_prints(&self, book: &mut PrintBook, vanished: &[String]) -> Result<u64, StateError> {
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            let withdrawn = withdraw_in!(self, &mut *tx, vanished)?;
            write_buckets!(self, &mut *tx, book)?;
            tx.commit().await.map_err(query_error("committing prints"))?;
            Ok(withdrawn)
        })
    }

    /// Drops every stored print of `shelf`: the next full pass builds them again (and finds the
    /// rows that left the view by a walk of the stored ones).
    pub async fn forget_prints(&self, shelf: Shelf) -> Result<(), StateError> {
        let statements = [
            format!("UPDATE poll_state SET {} = NULL WHERE id = 1", shelf.bits_column()),
            format!("DELETE FROM {}", shelf.buckets()),
            format!("DELETE FROM {}", shelf.log()),
        ];
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            for sql in &statements {
                sqlx::query(sql).execute(&mut *tx).await.map_err(query_error("dropping prints"))?;
            }
            tx.commit().await.map_err(query_error("committing prints"))
        })
    }

    /// Replaces every stored print of the book's shelf by `book` and records its bits: the book
    /// is whole (built or rebuilt by a full pass). The deadlines of `vanished` are withdrawn in
    /// the same transaction.
    pub async fn replace_prints(&self, book: &mut PrintBook, vanished: &[String]) -> Result<u64, StateError> {
        book.dirty = (0..1u32 << book.bits).filter(|b| book.has_cases(*b)).collect();
        let bits = book.bits as i32;
        let shelf = book.shelf;
        let emptied = [format!("DELETE FROM {}", shelf.buckets()), format!("DELETE FROM {}", shelf.log())];
        let sized = format!("UPDATE poll_state SET {} = $1 WHERE id = 1", shelf.bits_column());
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await.map_err(query_error("starting a transaction"))?;
            let withdrawn = withdraw_in!(self, &mut *tx, vanished)?;
            for sql in &emptied {
                sqlx::query(sql).execute(&mut *tx).await.map_err(query_error("replacing prints"))?;
            }
            write_buckets!(self, &mut *tx, book)?;
            sqlx::query(&sized)
                .bind(bits)
                .execute(&mut *tx)
                .await
                .map_err(query_error("recording the prints' size"))?;
            tx.commit().await.map_err(query_error("committing prints"))?;
            Ok(withdrawn)
        })
    }
}

/// Puts a stored bucket into a book, checked.
fn keep_bucket(book: &mut PrintBook, bucket: i32, blob: Vec<u8>) -> Result<(), StateError> {
    let shelf = book.shelf;
    let corrupt = || shelf.corrupt(false, format!("bucket {bucket}"));
    let decoded = Bucket::decode(&blob).ok_or_else(corrupt)?;
    let slot = usize::try_from(bucket).ok().filter(|b| *b < book.buckets.len()).ok_or_else(corrupt)?;
    book.len += decoded.len();
    book.buckets[slot] = decoded;
    Ok(())
}

/// Writes the dirty buckets of a book in the open transaction `$tx` (either engine's), and marks
/// them clean.
macro_rules! write_buckets {
    ($store:expr, $tx:expr, $book:expr) => {{
        let book: &mut PrintBook = $book;
        let shelf = book.shelf();
        let mut result = Ok(());
        // A book with a log (an incremental poll's) appends the entries it set as one row.
        if let Some(blob) = book.take_log_row() {
            let sql = format!("INSERT INTO {} (prints) VALUES ($1)", shelf.log());
            if let Err(e) = sqlx::query(&sql).bind(blob).execute($tx).await {
                result = Err(query_error("writing a print log")(e));
            }
        }
        let (kept, emptied): (Vec<u32>, Vec<u32>) = book.take_dirty().into_iter().partition(|b| book.has_cases(*b));
        for chunk in kept.chunks(BATCH_ROWS * 8) {
            if result.is_err() {
                break;
            }
            let values: Vec<String> = (0..chunk.len()).map(|i| format!("({})", $store.marks(2 * i + 1, 2))).collect();
            let sql = format!(
                "INSERT INTO {} (bucket, prints) VALUES {} \
                 ON CONFLICT (bucket) DO UPDATE SET prints = excluded.prints",
                shelf.buckets(),
                values.join(",")
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for b in chunk {
                q = q.bind(*b as i32).bind(book.stored_blob(*b));
            }
            if let Err(e) = q.execute($tx).await {
                result = Err(query_error("writing prints")(e));
                break;
            }
        }
        if result.is_ok() {
            for chunk in emptied.chunks(BATCH_ROWS * 32) {
                let sql = format!("DELETE FROM {} WHERE bucket IN ({})", shelf.buckets(), $store.marks(1, chunk.len()));
                let mut q = sqlx::query(&sql).persistent(false);
                for b in chunk {
                    q = q.bind(*b as i32);
                }
                if let Err(e) = q.execute($tx).await {
                    result = Err(query_error("deleting prints")(e));
                    break;
                }
            }
        }
        result
    }};
}
pub(crate) use write_buckets;

/// Withdraws the deadlines of `$case_refs` (cases that left the register) in the open
/// transaction `$tx`, as [`StateStore::withdraw_cases`] does: in the transaction that stores the
/// prints without them, so that a crash between the two cannot leave a case withdrawn whose
/// unchanged row the next pass would then skip. Evaluates to the number withdrawn.
macro_rules! withdraw_in {
    ($store:expr, $tx:expr, $case_refs:expr) => {{
        let case_refs: &[String] = $case_refs;
        let mut result: Result<u64, StateError> = Ok(0);
        for chunk in case_refs.chunks(BATCH_ROWS * 8) {
            let sql = format!(
                "UPDATE deadlines SET withdrawn = TRUE, next_step_on = NULL, child_key = NULL \
                 WHERE withdrawn = FALSE AND case_ref IN ({})",
                $store.marks(1, chunk.len())
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for c in chunk {
                q = q.bind(c.as_str());
            }
            match q.execute($tx).await {
                Ok(done) => {
                    if let Ok(n) = &mut result {
                        *n += done.rows_affected();
                    }
                }
                Err(e) => {
                    result = Err(query_error("withdrawing the deadlines of vanished cases")(e));
                    break;
                }
            }
        }
        result
    }};
}
pub(crate) use withdraw_in;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::file_state;

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
        let stored: usize = (0..16).map(|b| Bucket::decode(&book.stored_blob(b)).unwrap().len()).sum();
        assert_eq!(stored, 99);
        for b in 0..16 {
            let again = Bucket::decode(&book.stored_blob(b)).unwrap();
            for i in 0..again.len() {
                assert_eq!(book.get(again.case_ref(i)), Some(again.entries[i].print), "stored as held");
                assert!(!again.is_read(i), "marks are not stored");
            }
        }
    }

    #[test]
    fn a_whole_book_grows_its_buckets_as_it_fills_and_shrinks_them_when_emptied() {
        let mut book = PrintBook::whole(Shelf::Cases);
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
        assert_eq!(bits_for(1_000_000), 14);
        assert_eq!(bits_for(0), MIN_BITS);
        let mut part = PrintBook::new(4);
        for i in 0..5000 {
            part.set(&format!("CASE-{i}"), i);
        }
        assert_eq!(part.bits(), 4, "a partly loaded book keeps the stored bits");
    }

    /// The cursor is a hint: lookups in the order the cases were set (each found at its bucket's
    /// cursor), in reverse, or after cases were removed and added, answer as a scan would.
    #[test]
    fn lookups_answer_alike_in_any_order_whatever_the_cursors() {
        let mut book = PrintBook::new(MIN_BITS);
        let cases: Vec<String> = (0..3000).map(|i| format!("CASE-{i}")).collect();
        for (i, case) in cases.iter().enumerate() {
            book.set(case, i as u64 + 1);
        }
        for (i, case) in cases.iter().enumerate() {
            assert!(book.read_unchanged(case, i as u64 + 1), "{case} in order");
        }
        for (i, case) in cases.iter().enumerate().rev() {
            assert!(book.read_unchanged(case, i as u64 + 1), "{case} in reverse");
            assert!(!book.read_unchanged(case, i as u64 + 2), "{case} changed");
            assert_eq!(book.read(case), Some(i as u64 + 1));
        }
        for case in cases.iter().step_by(3) {
            book.remove(case);
        }
        book.set("CASE-NEW", 7);
        for (i, case) in cases.iter().enumerate() {
            assert_eq!(book.read_unchanged(case, i as u64 + 1), i % 3 != 0, "{case} after removals");
            assert_eq!(book.get(case), (i % 3 != 0).then_some(i as u64 + 1));
        }
        assert!(book.read_unchanged("CASE-NEW", 7));
        assert!(!book.read_unchanged("CASE-NEVER", 7));
        assert_eq!(book.len(), 2001);
    }

    #[test]
    fn the_cases_a_pass_did_not_read_are_the_unmarked_ones() {
        let mut book = PrintBook::whole(Shelf::Cases);
        for i in 0..2000 {
            book.set(&format!("CASE-{i}"), i + 1);
        }
        let mut next = PrintBook::whole_of(Shelf::Cases, book.bits());
        for b in 0..1u32 << book.bits() {
            keep_bucket(&mut next, b as i32, book.stored_blob(b)).unwrap();
        }
        assert_eq!(next.len(), 2000);
        assert_eq!(next.unread().len(), 2000, "nothing read yet");
        for i in 0..2000 {
            match i % 8 {
                0 => assert_eq!(next.read(&format!("CASE-{i}")), Some(i + 1)),
                4 => assert!(next.read_unchanged(&format!("CASE-{i}"), i + 1)),
                5 => assert!(!next.read_unchanged(&format!("CASE-{i}"), i + 2), "another print: changed, and read"),
                1 => next.set(&format!("CASE-{i}"), 7),
                2 | 6 => next.list(&format!("CASE-{i}")),
                _ => {}
            }
        }
        assert!(!next.read_unchanged("CASE-NEW", 1), "an unknown case");
        assert_eq!(next.get("CASE-NEW"), None, "is not listed by a read");
        next.list("BROKEN-1");
        assert_eq!(next.get("BROKEN-1"), Some(NO_PRINT));
        assert_eq!(next.get("CASE-2"), Some(3), "listing keeps the last good print");
        let mut unread = next.unread();
        unread.sort();
        let mut expected: Vec<String> = (0..2000).filter(|i| i % 4 == 3).map(|i| format!("CASE-{i}")).collect();
        expected.sort();
        assert_eq!(unread, expected);
    }

    #[test]
    fn a_book_with_a_log_reads_the_log_first_and_sets_into_its_next_row() {
        let mut stored = PrintBook::new(4);
        for i in 0..100 {
            stored.set(&format!("CASE-{i}"), i + 1);
        }
        let mut book = PrintBook::new(4);
        let mut log = PrintLog::default();
        log.read.prints.insert("CASE-7".into(), 70);
        book.log = Some(Box::new(log));
        let wanted = book.missing(["CASE-7", "CASE-8"].into_iter());
        assert_eq!(wanted, BTreeSet::from([book.bucket_of("CASE-8")]), "a logged case needs no bucket");
        for b in 0..16 {
            keep_bucket(&mut book, b as i32, stored.stored_blob(b)).unwrap();
        }
        assert_eq!(book.read("CASE-7"), Some(70), "the log stands over the bucket");
        assert!(!book.read_unchanged("CASE-7", 8), "the bucket's older print is not the case's");
        assert!(book.read_unchanged("CASE-7", 70));
        assert_eq!(book.read("CASE-8"), Some(9));
        assert!(book.read_unchanged("CASE-8", 9));
        assert!(!book.is_dirty());
        book.set("CASE-8", 9);
        book.set("CASE-7", 70);
        assert!(!book.is_dirty(), "setting the stored print writes nothing");
        book.set("CASE-8", 90);
        book.set("NEW-1", 5);
        book.list("BROKEN-1");
        assert!(book.is_dirty());
        assert_eq!((book.get("CASE-8"), book.get("NEW-1"), book.get("BROKEN-1")), (Some(90), Some(5), Some(NO_PRINT)));
        assert!(book.take_dirty().is_empty(), "no bucket is rewritten");
        let row = Bucket::decode(&book.take_log_row().unwrap()).unwrap();
        let logged: Vec<(&str, u64)> = (0..row.len()).map(|i| (row.case_ref(i), row.entries[i].print)).collect();
        assert_eq!(logged, [("CASE-8", 90), ("NEW-1", 5), ("BROKEN-1", NO_PRINT)]);
        assert!(book.take_log_row().is_none() && !book.is_dirty(), "taken as written");
    }

    #[test]
    fn a_truncated_or_undecodable_blob_is_refused() {
        let mut bucket = Bucket::default();
        bucket.push("ABC-1", tag_of("ABC-1"), 42, false);
        bucket.push("ÅÄÖ-2", tag_of("ÅÄÖ-2"), 43, false);
        let blob = bucket.encode();
        let back = Bucket::decode(&blob).unwrap();
        assert_eq!((back.case_ref(1), back.entries[1].print), ("ÅÄÖ-2", 43));
        assert!(Bucket::decode(&blob[..blob.len() - 1]).is_none(), "cut short");
        assert!(Bucket::decode(&[blob.as_slice(), b"x"].concat()).is_none(), "more than it says");
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert!(Bucket::decode(&bad).is_none(), "not UTF-8");
        assert!(Bucket::decode(&[0xff, 0xff, 0xff, 0xff]).is_none(), "a count beyond the blob");
    }

    fn tag_of(case_ref: &str) -> u32 {
        hash_of(case_ref, MIN_BITS).1
    }

    /// What a store does to a shelf's print log, as a poll or a full pass does it.
    #[derive(Debug, Clone)]
    enum LogStep {
        /// An incremental poll that sets these prints (reference number, print) and stores
        /// them, or fails before its transaction commits.
        Poll { sets: Vec<(u8, u64)>, commits: bool },
        /// The log folded into the buckets (a full pass, a long log).
        Fold,
        /// Every print dropped (a first full pass starting again).
        Forget,
    }

    fn log_step() -> impl proptest::strategy::Strategy<Value = LogStep> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (prop::collection::vec((0..24u8, 1..4u64), 0..6), prop::bool::weighted(0.8))
                .prop_map(|(sets, commits)| LogStep::Poll { sets, commits }),
            1 => Just(LogStep::Fold),
            1 => Just(LogStep::Forget),
        ]
    }

    const LOG_BITS: u32 = 4;

    async fn take_step(state: &StateStore, shelf: Shelf, step: &LogStep) {
        match step {
            LogStep::Poll { sets, commits } => {
                let mut book = state.open_print_log(shelf, LOG_BITS).await.unwrap();
                let refs: Vec<String> = sets.iter().map(|(r, _)| format!("CASE-{r}")).collect();
                let missing = book.missing(refs.iter().map(String::as_str));
                state.load_buckets(&mut book, &missing).await.unwrap();
                for (case_ref, (_, print)) in refs.iter().zip(sets) {
                    book.set(case_ref, *print);
                }
                if *commits {
                    state.store_prints(&mut book, &[]).await.unwrap();
                }
            }
            LogStep::Fold => state.fold_print_log(shelf, LOG_BITS).await.unwrap(),
            LogStep::Forget => state.forget_prints(shelf).await.unwrap(),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The log a store kept from its last poll reads as the log read whole, whatever this
        /// store and another process (a second store on the file) did to it in between: polls
        /// that stored or failed, folds (after which SQLite numbers new rows from 1 again), and
        /// prints forgotten; the store opens the log after some steps, not all. An open after its
        /// own poll alone decodes only the row that poll added.
        #[test]
        fn a_kept_print_log_reads_as_the_log_read_whole(
            steps in proptest::collection::vec((proptest::bool::ANY, log_step(), proptest::bool::weighted(0.6)), 1..14),
            shelf in proptest::sample::select(vec![Shelf::Cases, Shelf::Placements]),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (_dir, url, this) = file_state().await;
                let other = StateStore::connect(&url).await.unwrap();
                let refs: Vec<String> = (0..24).map(|i| format!("CASE-{i}")).collect();
                let logged = |book: &PrintBook| refs.iter().map(|r| book.log.as_ref().unwrap().get(r)).collect::<Vec<_>>();
                let mut rows_before = None;
                for (at, (by_this, step, check)) in steps.iter().enumerate() {
                    take_step(if *by_this { &this } else { &other }, shelf, step).await;
                    if !check && at + 1 < steps.len() {
                        rows_before = None;
                        continue;
                    }
                    // Opened by this store (its kept log) and by a store that kept nothing.
                    let kept = this.open_print_log(shelf, LOG_BITS).await.unwrap();
                    let fresh = StateStore::connect(&url).await.unwrap();
                    let whole = fresh.open_print_log(shelf, LOG_BITS).await.unwrap();
                    assert_eq!(logged(&kept), logged(&whole), "after {step:?} by {}", if *by_this { "this store" } else { "another" });
                    assert_eq!(whole.log_rows_decoded(), whole.log.as_ref().unwrap().read.rows.len());
                    let rows = kept.log.as_ref().unwrap().read.rows.len();
                    if let (true, LogStep::Poll { commits, sets }, Some(before)) = (by_this, step, rows_before) {
                        let added = usize::from(*commits && !sets.is_empty());
                        if rows == before + added {
                            assert_eq!(kept.log_rows_decoded(), added, "after {step:?}: only the row it added");
                        }
                    }
                    rows_before = Some(rows);
                    drop((kept, whole));
                    fresh.close().await;
                }
                other.close().await;
                this.close().await;
            });
        }
    }

    /// After a fold, SQLite numbers the log's rows from 1 again: a row of another process's with
    /// the number of a kept row is not taken for it.
    #[tokio::test]
    async fn a_log_row_numbered_again_after_a_fold_is_read_anew() {
        let (_dir, url, this) = file_state().await;
        let other = StateStore::connect(&url).await.unwrap();
        let poll = |case: u8, print: u64| LogStep::Poll { sets: vec![(case, print)], commits: true };
        take_step(&this, Shelf::Cases, &poll(1, 11)).await;
        let book = this.open_print_log(Shelf::Cases, LOG_BITS).await.unwrap();
        assert_eq!((book.log_rows_decoded(), book.get("CASE-1")), (1, Some(11)));
        drop(book);
        let book = this.open_print_log(Shelf::Cases, LOG_BITS).await.unwrap();
        assert_eq!((book.log_rows_decoded(), book.get("CASE-1")), (0, Some(11)), "kept");
        drop(book);
        other.fold_print_log(Shelf::Cases, LOG_BITS).await.unwrap();
        take_step(&other, Shelf::Cases, &poll(2, 22)).await;
        let crate::db::Pool::Sqlite(pool) = &this.pool else { unreachable!("a SQLite file") };
        let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM case_print_log").fetch_all(pool).await.unwrap();
        assert_eq!(seqs, [1], "the row is numbered as the folded one was");
        let book = this.open_print_log(Shelf::Cases, LOG_BITS).await.unwrap();
        assert_eq!(book.log_rows_decoded(), 1);
        assert_eq!(
            (book.get("CASE-1"), book.get("CASE-2")),
            (None, Some(22)),
            "CASE-1 is in its bucket now, not loaded"
        );
        other.close().await;
        this.close().await;
    }
}
