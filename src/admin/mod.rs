//! Administration shared by the serial console and the local web page:
//! the commands and their parser, the console's line discipline, config
//! edits with validation, the HTTP request parser, login sessions and the
//! pages. All of it is sans-IO: the shell (`shell::console`, `shell::web`)
//! moves the bytes and runs the commands against the node and the config file.

pub mod command;
pub mod config_edit;
pub mod console;
pub mod http;
pub mod login;
pub mod report;
pub mod web;

pub use command::Command;
