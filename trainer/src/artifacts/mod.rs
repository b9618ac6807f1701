//! What runs and training leave on disk: model cards ([`card`]), the model folder and the
//! networks loaded from it ([`models`]), and the streams exported for the demo ([`export`]).

pub mod card;
pub mod export;
pub mod models;
