//! ComfyUI 0.3.64's rules, as `tests/comfyui-api` recorded them, for the
//! servers that must answer exactly as it does: the ComfyUI stand-in the
//! tests run, and the app's gateway in front of the fleet.
//!
//! | module | rule |
//! | --- | --- |
//! | `validate` | `POST /prompt`'s validation: refusals, bodies, coercions |
//! | `upload` | `/upload/image`: where a file goes, under which name |

pub mod upload;
pub mod validate;

pub use validate::*;
