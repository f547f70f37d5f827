//! Reading what each instance offers (its node classes and model files,
//! from `/object_info`) once per run of it: placement sends a job only
//! where its classes and files are.

use super::models::Offer;
use super::state::Shared;
use std::sync::Arc;
use std::time::Duration;
use storycore_types::Instance;

/// How long reading an instance's `/object_info` may take (it is half a
/// megabyte, answered in about 70 ms).
const READ_LIMIT: Duration = Duration::from_secs(10);

/// Instances that take work and whose offer was not read in this run of
/// them, each marked as being read.
pub(crate) fn to_read(shared: &Shared) -> Vec<Instance> {
    let fleet = shared.manager.list();
    let mut st = shared.lock();
    fleet
        .into_iter()
        .filter(|i| i.takes_work() && st.begin_offer_read(i))
        .collect()
}

/// Reads the instance's offer; one that cannot be read is not held against
/// it (its jobs go there and ComfyUI says what it lacks).
pub(crate) async fn read(shared: Arc<Shared>, instance: Instance) {
    let ask = async {
        let client = crate::client::ComfyClient::for_instance(&instance.config)
            .map_err(|e| e.to_string())?
            .with_timeout(READ_LIMIT);
        client.object_info().await.map_err(|e| e.to_string())
    };
    let offer = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        r = ask => r,
    };
    let offer = match offer {
        Ok(info) => {
            let offer = Offer::from_object_info(&info);
            tracing::info!(
                instance = %instance.id,
                files = offer.model_files().values().map(|f| f.len()).sum::<usize>(),
                "read what it offers"
            );
            Some(offer)
        }
        Err(why) => {
            tracing::warn!(instance = %instance.id, "could not read what it offers: {why}");
            None
        }
    };
    shared
        .lock()
        .set_offer(&instance.id, instance.status_since, offer);
    shared.emit(storycore_types::AppEvent::ModelsRead {
        id: instance.id.clone(),
    });
    shared.wake.notify_one();
}
