//! One module per subcommand. Commands return data; `crate::output` renders it.
