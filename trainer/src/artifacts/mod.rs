//! What runs and training leave on disk: model cards ([`card`]), the model folder and the
//! networks loaded from it ([`models`]), the streams exported for the demo ([`export`]), and
//! streams averaged from others ([`average`]).

pub mod average;
pub mod card;
pub mod export;
pub mod models;
