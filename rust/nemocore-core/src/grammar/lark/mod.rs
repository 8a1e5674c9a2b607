//! Lark grammar syntax: tokenizer, parser (to an AST) and lowering to the
//! engine's [`Ir`](super::ir::Ir).

pub mod lexer;
pub mod lower;
pub mod parser;
