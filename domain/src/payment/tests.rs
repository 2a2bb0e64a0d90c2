//! Given/when/then tests of the Payment aggregate and property tests of its money invariants.
