//! A cheap outline of a source file: its top-level symbols with their line numbers, found by a
//! regular expression per language (no parser). The fix prompt shows it for a named file that
//! is too large to show whole (issue #11, "Context": "top-level symbols of the named files when
//! cheap").
//!
//! Languages, by file extension, and what counts as a top-level symbol (a line that starts at
//! column 0 — nested items are indented and so left out):
//! - Rust (`.rs`): `fn`, `struct`, `enum`, `trait`, `impl`, `mod`, `type`, `union`,
//!   `macro_rules!`, with any `pub`/`pub(crate)` and `async`/`const`/`unsafe`/`extern "C"`;
//! - Python (`.py`, `.pyi`): `def`, `async def`, `class`;
//! - JavaScript / TypeScript (`.js`, `.jsx`, `.mjs`, `.cjs`, `.ts`, `.tsx`, `.mts`, `.cts`):
//!   `function`, `class` (also `abstract`, `async`, `function*`), TypeScript `interface`,
//!   `enum` and `type X =`, and every `export` line;
//! - Go (`.go`): `func` (methods too) and `type`.
//!
//! Decisions: each symbol is its first line, trimmed at the end, without a trailing `{`, cut
//! to [`MAX_SYMBOL_CHARS`] characters; at most `max_symbols` are kept and the outline says how
//! many more there were. A regex can be fooled (a `fn` at column 0 inside a raw string): the
//! outline is a map for the model, never used to edit.

use std::sync::LazyLock;

use regex::Regex;

/// Longest symbol line kept, characters.
pub const MAX_SYMBOL_CHARS: usize = 160;

/// The languages [`outline`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    Go,
}

impl Language {
    /// The language of `path` by its extension; `None` for any other file.
    pub fn of(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "rs" => Self::Rust,
            "py" | "pyi" => Self::Python,
            "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" => Self::JavaScript,
            "go" => Self::Go,
            _ => return None,
        })
    }

    fn pattern(self) -> &'static Option<Regex> {
        match self {
            Self::Rust => &RUST,
            Self::Python => &PYTHON,
            Self::JavaScript => &JAVASCRIPT,
            Self::Go => &GO,
        }
    }
}

static RUST: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"^(?:pub(?:\([^)]*\))?\s+)?(?:(?:default|async|const|unsafe|extern(?:\s+"[^"]*")?)\s+)*(?:fn|struct|enum|trait|impl|mod|type|union)\b|^macro_rules!"#,
    )
    .ok()
});
static PYTHON: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^(?:async\s+)?(?:def|class)\s").ok());
static JAVASCRIPT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^export\b|^(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(?:function\b|class\s|interface\s|enum\s|const\s+enum\s|type\s+\w+(?:<[^=]*>)?\s*=)",
    )
    .ok()
});
static GO: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^(?:func|type)\s").ok());

/// A file's outline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outline {
    /// `(1-based line number, symbol line)`, in file order.
    pub symbols: Vec<(u32, String)>,
    /// Symbols found past `max_symbols` and not kept.
    pub more: usize,
}

impl Outline {
    /// One `LINE: symbol` line per symbol, then `… N more` when some were not kept.
    pub fn render(&self) -> String {
        let mut s: String = self.symbols.iter().map(|(n, sym)| format!("{n}: {sym}\n")).collect();
        if self.more > 0 {
            s.push_str(&format!("… {} more top-level symbols\n", self.more));
        }
        s
    }
}

/// The top-level symbols of `text` as a file at `path` (its extension picks the language),
/// at most `max_symbols`. `None` for a language [`Language::of`] does not know.
pub fn outline(path: &str, text: &str, max_symbols: usize) -> Option<Outline> {
    let re = Language::of(path)?.pattern().as_ref()?;
    let mut out = Outline::default();
    for (i, line) in text.lines().enumerate() {
        if !re.is_match(line) {
            continue;
        }
        if out.symbols.len() >= max_symbols {
            out.more += 1;
            continue;
        }
        let sym = line.trim_end().trim_end_matches('{').trim_end();
        let sym: String = sym.chars().take(MAX_SYMBOL_CHARS).collect();
        out.symbols.push((u32::try_from(i + 1).unwrap_or(u32::MAX), sym));
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn symbols(path: &str, text: &str) -> Vec<String> {
        outline(path, text, 100).unwrap().symbols.into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn each_language_lists_its_top_level_symbols_and_nothing_nested() {
        // (file, text, expected symbols)
        let cases: [(&str, &str, &[&str]); 4] = [
            (
                "src/lib.rs",
                "//! doc\nuse std::io;\n#[derive(Debug)]\npub struct A {\n    x: u8,\n}\nenum B { X }\npub(crate) trait T {\n    fn inner(&self);\n}\nimpl<T: Clone> T for A {\n    pub fn method() {}\n}\npub async fn run() -> u8 {\n    0\n}\nconst fn c() {}\nunsafe extern \"C\" fn ffi() {}\nmod tests;\npub type R = u8;\nmacro_rules! m { () => {} }\nlet fn_like = 1;\n// fn commented\n",
                &[
                    "pub struct A",
                    "enum B { X }",
                    "pub(crate) trait T",
                    "impl<T: Clone> T for A",
                    "pub async fn run() -> u8",
                    "const fn c() {}",
                    "unsafe extern \"C\" fn ffi() {}",
                    "mod tests;",
                    "pub type R = u8;",
                    "macro_rules! m { () => {} }",
                ],
            ),
            (
                "app/models.py",
                "import os\n\nclass User(Base):\n    def save(self):\n        pass\n\ndef helper(x):\n    return x\n\nasync def fetch():\n    pass\ndefault = 1\n",
                &["class User(Base):", "def helper(x):", "async def fetch():"],
            ),
            (
                "web/app.tsx",
                "import x from 'y';\nexport default function App() {\n  function inner() {}\n}\nexport const k = 1;\nclass Store {\n  method() {}\n}\nasync function load() {}\ninterface Props { a: string }\ntype Id<T> = string;\nconst local = 2;\nabstract class Base {}\n",
                &[
                    "export default function App()",
                    "export const k = 1;",
                    "class Store",
                    "async function load() {}",
                    "interface Props { a: string }",
                    "type Id<T> = string;",
                    "abstract class Base {}",
                ],
            ),
            (
                "cmd/main.go",
                "package main\n\nimport \"fmt\"\n\ntype Server struct {\n\taddr string\n}\n\nfunc (s *Server) Run() error {\n\tfunc() {}()\n\treturn nil\n}\n\nfunc main() {\n}\nvar x = 1\n",
                &["type Server struct", "func (s *Server) Run() error", "func main()"],
            ),
        ];
        for (path, text, want) in cases {
            assert_eq!(symbols(path, text), want, "{path}");
        }
    }

    #[test]
    fn line_numbers_caps_and_unknown_languages() {
        let text = "fn a() {}\n\nfn b() {}\n".to_string() + &"fn c() {}\n".repeat(10);
        let o = outline("x.rs", &text, 3).unwrap();
        assert_eq!(
            o.symbols,
            [(1, "fn a() {}".to_string()), (3, "fn b() {}".to_string()), (4, "fn c() {}".to_string())]
        );
        assert_eq!(o.more, 9);
        assert_eq!(o.render(), "1: fn a() {}\n3: fn b() {}\n4: fn c() {}\n… 9 more top-level symbols\n");
        let long = format!("fn {}() {{}}\n", "x".repeat(500));
        assert_eq!(outline("x.rs", &long, 10).unwrap().symbols[0].1.chars().count(), MAX_SYMBOL_CHARS);
        assert_eq!(outline("README.md", "fn a() {}\n", 10), None);
        assert_eq!(outline("Makefile", "fn a() {}\n", 10), None);
        assert_eq!(Language::of("SRC/Lib.RS"), Some(Language::Rust));
    }
}
