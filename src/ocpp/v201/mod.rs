//! OCPP 2.0.1 message types and payload validation, generated from the official JSON schemas.
