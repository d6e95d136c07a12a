//! What the dataplane thread is handed: Felix's newest desired state and the BGP speaker's newest
//! routes, each replaced by a newer one while not yet taken, independently of the other.

use calico_dataplane::plan::bgp::BgpRoutes;
use calico_felix::desired::Desired;

#[derive(Debug, Default)]
pub struct DataplaneInput {
    pub desired: Option<Desired>,
    pub bgp: Option<BgpRoutes>,
}
