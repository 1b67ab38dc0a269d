//! The console sink (`url: console`), for trying a bridge out: each event's stored JSON as one
//! line on stdout. An effect like the webhook's: what came of it is an [`Answer`] that the
//! same decision reads (printed: acknowledged; not: tried again on the schedule).

use super::step::Answer;
use std::io::Write;

/// Writes `body` and a newline to `out`, flushed.
pub fn print(out: &mut impl Write, body: &str) -> Answer {
    match writeln!(out, "{body}").and_then(|()| out.flush()) {
        Ok(()) => Answer::Printed,
        Err(e) => Answer::NotPrinted(e.to_string()),
    }
}

/// Prints `body` on stdout (held for the line, so lines of several sinks never mix).
pub fn print_stdout(body: &str) -> Answer {
    print(&mut std::io::stdout().lock(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdout whose reader has gone.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_printed_line_is_the_body_and_a_newline_and_a_closed_stdout_says_why() {
        let mut out = Vec::new();
        assert_eq!(print(&mut out, r#"{"id":"evt_1"}"#), Answer::Printed);
        assert_eq!(out, b"{\"id\":\"evt_1\"}\n");
        assert_eq!(
            print(&mut Closed, "{}"),
            Answer::NotPrinted("broken pipe".into())
        );
    }
}
