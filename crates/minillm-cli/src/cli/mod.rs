pub mod bench;
pub mod compare;
pub mod corpus;
pub mod demo;
pub mod display;
pub mod model;
pub mod prepare;
pub mod tokenizer;
