//! The Distributed Map (`ProcessorConfig.Mode: DISTRIBUTED`): items from the state input or an
//! `ItemReader`, `ItemSelector` per item, `ItemBatcher`, one child execution per item or batch
//! (through [`Runtime::map_children`](crate::Runtime::map_children), or in this process), tolerated
//! failures, and the `ResultWriter`. Shares items, concurrency, `ItemSelector`, tolerance and result
//! collection with the inline Map (`exec/map.rs`).
//!
//! One file per concern: `run` (the state and its events), `reader` (ItemReader; `csv`,
//! `manifest`), `batcher` (ItemBatcher), `children` (in-process children), `writer`
//! (ResultWriter).

mod batcher;
mod children;
mod csv;
mod manifest;
mod reader;
mod run;
mod writer;
