//! DataTransfer (P01): vendor extensions registered by the integrator answer the requests of
//! their vendor id; without one the answer is UnknownVendorId.

use crate::ocpp::v201;
use std::fmt::Debug;
use std::sync::Arc;

/// A vendor extension for DataTransfer (P01): answers the requests of its vendor id, or
/// `None` to let the next handler (or UnknownVendorId) answer.
pub trait DataTransferHandler: Send + Sync + Debug {
    fn handle(&self, request: &v201::DataTransferRequest) -> Option<v201::DataTransferResponse>;
}

/// The registered handlers, asked in order.
#[derive(Debug, Default)]
pub struct DataTransfer {
    handlers: Vec<Arc<dyn DataTransferHandler>>,
}

impl DataTransfer {
    pub fn new(handlers: Vec<Arc<dyn DataTransferHandler>>) -> Self {
        DataTransfer { handlers }
    }

    /// P01: DataTransfer from the CSMS.
    pub(crate) fn data_transfer(
        &self,
        request: v201::DataTransferRequest,
    ) -> v201::DataTransferResponse {
        self.handlers
            .iter()
            .find_map(|h| h.handle(&request))
            .unwrap_or(v201::DataTransferResponse {
                custom_data: None,
                status: v201::DataTransferStatusEnum::UnknownVendorId,
                status_info: None,
                data: None,
            })
    }
}
