//! A document's share of the memory budget of polls (`--max-poll-memory`,
//! docs/scaling.md#handoff): the new owner reserves it before it reads a document (for the
//! length its `Content-Length` tells, else growing as the body arrives) and holds it until
//! the import is written, so that the documents of many bridges arriving at once wait in line
//! with the polls instead of all being held together. A document needs what a poll of a
//! body that long needs; one that needs more than the whole budget waits for the whole
//! budget and is taken alone.

use crate::runtime::{MemoryBudget, Reservation, Short, budget_need};
use tokio_util::sync::CancellationToken;

/// The share held for one bridge's document.
pub struct DocShare {
    memory: MemoryBudget,
    held: Reservation,
}

impl DocShare {
    /// A share of `memory`, empty.
    pub fn new(memory: &MemoryBudget) -> DocShare {
        DocShare {
            memory: memory.clone(),
            held: memory.reservation(),
        }
    }

    /// What a document of `bytes` needs, at most the whole budget.
    fn need(&self, bytes: u64) -> u64 {
        budget_need(bytes, 0).min(self.memory.bytes())
    }

    /// Holds enough for a document of `bytes`, at once; else the bytes to wait in line for.
    pub fn hold(&mut self, bytes: u64) -> Result<(), u64> {
        let need = self.need(bytes);
        match self.held.page(need) {
            Ok(()) => Ok(()),
            Err(Short::Wait { need }) => Err(need),
            // Not with `need` at most the budget; were it, the whole budget is waited for.
            Err(Short::Exceeds { budget, .. }) => Err(budget),
        }
    }

    /// Lets go of what is held, then waits in line for `need` bytes and holds them; false
    /// when `stop` is cancelled first.
    pub async fn wait(&mut self, need: u64, stop: &CancellationToken) -> bool {
        let need = need.min(self.memory.bytes());
        self.held.wait_for(need, stop).await.unwrap_or(false)
    }

    /// Lets go of what is held.
    pub fn release(&mut self) {
        self.held = self.memory.reservation();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[tokio::test]
    async fn a_document_waits_in_line_and_one_larger_than_the_budget_goes_alone() {
        let memory = MemoryBudget::new(10 * MIB);
        let stop = CancellationToken::new();
        // A document of 2 MiB needs what a poll of a body that long needs.
        let share = budget_need(2 * MIB, 0);
        let mut a = DocShare::new(&memory);
        a.hold(2 * MIB).unwrap();
        assert_eq!(memory.in_use(), share);
        let mut b = DocShare::new(&memory);
        assert_eq!(b.hold(2 * MIB), Err(share));
        // Larger than the budget allows: it waits for all of it.
        assert_eq!(b.hold(100 * MIB), Err(10 * MIB));
        a.release();
        assert!(b.wait(10 * MIB, &stop).await);
        assert_eq!(memory.in_use(), 10 * MIB);
        b.hold(100 * MIB).unwrap();
        drop(b);
        assert_eq!(memory.in_use(), 0);
    }
}
