//! Unified diffs: parsing ([`parse`]), which lines GitHub accepts comments on ([`anchor`]),
//! which files are reviewed at all ([`filter`]) and how hunks are packed into model-sized
//! chunks ([`chunk`]).
//!
//! The parser is byte-oriented: a diff may hold CRLF line ends, non-UTF-8 bytes and lines of
//! 100k characters, and none of that may make it fail or lose a line.

pub mod anchor;
pub mod chunk;
pub mod filter;
pub mod parse;

pub use anchor::{AnchorIndex, Placement};
pub use chunk::{Chunk, ChunkPlan, Chunker};
pub use filter::{FileFilter, SkipReason, Skipped};
pub use parse::{parse, Diff, FileDiff, FileStatus, Hunk, Line, LineKind};
