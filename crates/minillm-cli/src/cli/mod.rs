pub mod compare;
pub mod corpus;
pub mod demo;
pub mod display;
pub mod tokenizer;
