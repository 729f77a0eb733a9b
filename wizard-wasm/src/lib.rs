//! wizard-wasm
