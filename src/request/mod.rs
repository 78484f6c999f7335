//! One request's way through the module, up to the release engine:
//! `decide` (the precontent phase handler) lets it pass, answers it, or has
//! `park` hand it to the engine; when the engine lets it go, `park`'s wake-up
//! handler runs its phases again, back into `decide`. `agent_regex` keeps
//! the privileged user agent's regular expressions that `decide` asks about.

mod agent_regex;
pub mod decide;
mod park;
