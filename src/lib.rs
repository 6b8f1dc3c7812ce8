//! acs-harness: contract tests, a stateful double and load runs for the Azure
//! Communication Services Call Automation API (2021 preview), from one contract.

pub mod auth;
pub mod cli;
pub mod client;
pub mod contract;
pub mod double;
pub mod duration;
pub mod gate;
pub mod generate;
pub mod load;
pub mod output;
pub mod receiver;
pub mod redact;
pub mod send;
pub mod shape;
