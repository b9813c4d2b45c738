//! The suite: the file that names a comparison (data, models, goals, prices; [`file`]) and
//! the record of a run of it (`run.json`; [`record`]). `run::suite` executes a suite;
//! `report::suite` reads a run folder back. Both depend on this module, not on each other.

pub mod file;
pub mod record;

pub use self::file::{ModelEntry, ModelKind, Suite, SuiteError, TrainRecipe};
pub use self::record::{
    read_run_record, ModelRun, RunRecord, Status, EVALS_DIR, MODELS_DIR, RUN_FILE,
    RUN_SCHEMA_VERSION, SUITE_COPY,
};
