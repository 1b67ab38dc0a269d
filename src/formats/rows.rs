//! CSV records one at a time, each into buffers that are reused (csv-core's parser, RFC 4180
//! with any one-byte delimiter). The `csv` crate's reader keeps two more copies of the first
//! record as its headers: a header row of a million columns would be held three times.

use csv_core::ReadRecordResult;

/// The records of a CSV text, read one at a time by [`Rows::next`].
pub(super) struct Rows<'a> {
    core: csv_core::Reader,
    input: &'a [u8],
    /// Bytes of `input` read so far.
    read: usize,
    /// Records read so far, and the number of fields of the first.
    records: u64,
    first_len: Option<usize>,
    /// The record read last.
    current: Record,
}

/// One record: its fields one after another, where each ends, how many.
#[derive(Default)]
pub(super) struct Record {
    fields: Vec<u8>,
    ends: Vec<usize>,
    len: usize,
}

impl<'a> Rows<'a> {
    pub(super) fn new(input: &'a [u8], delimiter: u8) -> Rows<'a> {
        Rows {
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            input,
            read: 0,
            records: 0,
            first_len: None,
            current: Record::default(),
        }
    }

    /// Reads the next record; false at the end. Every record must have as many fields as the
    /// first (the reason, in the words of the `csv` crate, otherwise).
    pub(super) fn next(&mut self) -> Result<bool, String> {
        let (line, byte) = (self.core.line(), self.read);
        let r = &mut self.current;
        let (mut out, mut end) = (0, 0);
        loop {
            let (res, nin, nout, nend) =
                self.core
                    .read_record(self.input, &mut r.fields[out..], &mut r.ends[end..]);
            let was_empty = self.input.is_empty();
            self.input = &self.input[nin..];
            self.read += nin;
            (out, end) = (out + nout, end + nend);
            match res {
                // The whole text is given: an empty input tells the parser it has ended.
                ReadRecordResult::InputEmpty if !was_empty => {}
                ReadRecordResult::OutputFull => grow(&mut r.fields),
                ReadRecordResult::OutputEndsFull => grow(&mut r.ends),
                ReadRecordResult::Record => break,
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return Ok(false),
            }
        }
        r.len = end;
        let record = self.records;
        self.records += 1;
        match self.first_len {
            None => self.first_len = Some(end),
            Some(first) if first != end => {
                return Err(format!(
                    "CSV error: record {record} (line: {line}, byte: {byte}): found record with \
                     {end} fields, but the previous record has {first} fields"
                ));
            }
            Some(_) => {}
        }
        Ok(true)
    }

    /// The record read last.
    pub(super) fn record(&self) -> &Record {
        &self.current
    }

    /// The record read last, kept (the next one is read into new buffers).
    pub(super) fn take(&mut self) -> Record {
        let mut r = std::mem::take(&mut self.current);
        let bytes = r.len.checked_sub(1).map_or(0, |last| r.ends[last]);
        r.fields.truncate(bytes);
        r.ends.truncate(r.len);
        r.fields.shrink_to_fit();
        r.ends.shrink_to_fit();
        r
    }
}

impl Record {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Field `i`: text, since the input is (a field is a run of its bytes between ASCII
    /// delimiters, quotes and line ends).
    pub(super) fn field(&self, i: usize) -> &str {
        if i >= self.len {
            return "";
        }
        let start = i.checked_sub(1).map_or(0, |before| self.ends[before]);
        let bytes = self.fields.get(start..self.ends[i]).unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

/// Twice the room (at least 4), as the `csv` crate grows its records.
fn grow<T: Default + Clone>(v: &mut Vec<T>) {
    let len = (v.len() * 2).max(4);
    v.resize(len, T::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every record as text, or the error: what `Rows` reads.
    fn ours(text: &str, delimiter: u8) -> Result<Vec<Vec<String>>, String> {
        let mut rows = Rows::new(text.as_bytes(), delimiter);
        let mut out = Vec::new();
        while rows.next()? {
            let r = rows.record();
            out.push((0..r.len()).map(|i| r.field(i).to_string()).collect());
        }
        Ok(out)
    }

    /// What the `csv` crate reads (no header row set apart, as `Rows`).
    fn theirs(text: &str, delimiter: u8) -> Result<Vec<Vec<String>>, String> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .from_reader(text.as_bytes());
        let mut out = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| e.to_string())?;
            out.push(record.iter().map(str::to_string).collect());
        }
        Ok(out)
    }

    #[test]
    fn records_quotes_line_ends_and_errors() {
        let text = "id,name\r\n1,\"a \"\"b\"\", c\"\n\n2,\"x\ny\"\n3,é";
        assert_eq!(
            ours(text, b','),
            Ok(vec![
                vec!["id".into(), "name".into()],
                vec!["1".into(), "a \"b\", c".into()],
                vec!["2".into(), "x\ny".into()],
                vec!["3".into(), "é".into()],
            ])
        );
        let e = ours("a,b\n1,2\n3\n", b',').unwrap_err();
        assert_eq!(e, theirs("a,b\n1,2\n3\n", b',').unwrap_err());
        assert_eq!(
            e,
            "CSV error: record 2 (line: 3, byte: 8): found record with 1 fields, but the \
             previous record has 2 fields"
        );
        assert_eq!(ours("", b','), Ok(vec![]));
        let mut rows = Rows::new(b"a;b\n", b';');
        assert!(rows.next().unwrap());
        let kept = rows.take();
        assert!(!rows.next().unwrap());
        assert_eq!(
            (kept.len(), kept.field(0), kept.field(1), kept.field(2)),
            (2, "a", "b", "")
        );
    }

    proptest! {
        /// Any text of CSV's own characters reads as the `csv` crate reads it.
        #[test]
        fn any_text_reads_as_the_csv_crate_reads_it(
            text in "[a\",;\r\n é]{0,40}",
            delimiter in prop::sample::select(vec![b',', b';', b'\t']),
        ) {
            prop_assert_eq!(ours(&text, delimiter), theirs(&text, delimiter));
        }
    }
}
