//! API keys and secret environment values: in the OS keyring (or, by
//! choice, the 0600 secrets file), never in a config file.

use super::*;

impl InstanceManager {
    // ----- API keys -------------------------------------------------------------

    pub(super) fn vault(&self) -> crate::secrets::Vault {
        crate::secrets::Vault::new(&self.inner.options.config_dir)
    }

    /// Stores (`Some`) or removes (`None`) the instance's API key and points
    /// its `apiKeyRef` at it: in the OS keyring, or in the 0600 secrets file
    /// when `in_file` (the user's explicit choice on a machine without a
    /// keyring). A monitored instance is probed with the new key at once.
    pub async fn set_api_key(
        &self,
        id: &str,
        key: Option<String>,
        in_file: bool,
    ) -> Result<Instance, ManagerError> {
        let old = self.config_of(id)?.api_key_ref;
        let vault = self.vault();
        let secret = |source| ManagerError::Secret {
            id: id.to_string(),
            source,
        };
        let new_ref = match key {
            Some(key) => {
                let reference = crate::secrets::api_key_reference(id, in_file);
                let (v, r) = (vault.clone(), reference.clone());
                tokio::task::spawn_blocking(move || v.store(&r, &key))
                    .await
                    .expect("the keyring task panicked")
                    .map_err(secret)?;
                Some(reference)
            }
            None => None,
        };
        let same_ref = old == new_ref;
        if let Some(old) = old.filter(|o| Some(o) != new_ref.as_ref()) {
            let v = vault.clone();
            let removed = tokio::task::spawn_blocking(move || v.delete(&old))
                .await
                .expect("the keyring task panicked");
            if let Err(e) = removed {
                tracing::warn!(%id, "the previous API key was not removed: {e}");
            }
        }
        let inst = self
            .update(
                id,
                InstanceConfigPatch {
                    api_key_ref: Some(new_ref),
                    ..Default::default()
                },
            )
            .await?;
        // Same reference, new key: `update` saw no change, and the monitor's
        // client still has the old key.
        let monitored = self.lock().get(id).is_some_and(|e| e.monitor.is_some());
        if monitored && same_ref {
            self.start_monitor(id, &inst.config, inst.status == InstanceStatus::Starting)?;
        }
        tracing::info!(%id, stored_in = if in_file { "file" } else { "keyring" }, "API key set");
        Ok(inst)
    }

    /// Deletes the entries among `refs` that the app made for instance `id`
    /// (`instance/<id>/...`, in the keyring or the file). An entry the user
    /// named by hand, or one a duplicated config still names, is left alone.
    pub(super) async fn forget_secrets(&self, id: &str, refs: Vec<String>) {
        let refs: Vec<String> = refs
            .into_iter()
            .filter(|r| crate::secrets::belongs_to(r, id))
            .collect();
        if refs.is_empty() {
            return;
        }
        let vault = self.vault();
        let failed = tokio::task::spawn_blocking(move || {
            refs.into_iter()
                .filter_map(|r| vault.delete(&r).err().map(|e| format!("{r}: {e}")))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for f in failed {
            tracing::warn!(%id, "a secret of the instance was not removed: {f}");
        }
    }

    /// Stores (`Some`) or removes (`None`) the secret value of environment
    /// variable `name` and lists it in the instance's `secretEnvVars`: the
    /// launch reads it from the keyring (or the 0600 file, `in_file`), and
    /// no file of the app holds it. A plain variable of that name is
    /// replaced by the secret one.
    pub async fn set_secret_env(
        &self,
        id: &str,
        name: &str,
        value: Option<String>,
        in_file: bool,
    ) -> Result<Instance, ManagerError> {
        let config = self.config_of(id)?;
        let mut secret = config.secret_env_vars.clone().unwrap_or_default();
        let old = secret.get(name).cloned();
        let secret_err = |source| ManagerError::Secret {
            id: id.to_string(),
            source,
        };
        match value {
            Some(v) => {
                // Checked before anything is stored: a bad name stores nothing.
                let mut probe = config.clone();
                let mut names = secret.clone();
                names.insert(name.to_string(), "probe".into());
                probe.secret_env_vars = Some(names);
                if let Some(plain) = probe.env_vars.as_mut() {
                    plain.remove(name);
                }
                let others = self.lock().configs_except(Some(id));
                crate::model::validate_config(&probe, &others)
                    .map_err(|fields| ManagerError::Invalid { fields })?;
                let reference = crate::secrets::env_reference(id, name, in_file);
                let (vault, r) = (self.vault(), reference.clone());
                tokio::task::spawn_blocking(move || vault.store(&r, &v))
                    .await
                    .expect("the keyring task panicked")
                    .map_err(secret_err)?;
                secret.insert(name.to_string(), reference);
            }
            None => {
                secret.remove(name);
            }
        }
        let mut plain = config.env_vars.clone();
        if let Some(p) = plain.as_mut() {
            p.remove(name);
        }
        let inst = self
            .update(
                id,
                InstanceConfigPatch {
                    secret_env_vars: Some((!secret.is_empty()).then_some(secret.clone())),
                    env_vars: Some(plain.filter(|p| !p.is_empty())),
                    ..Default::default()
                },
            )
            .await?;
        if let Some(old) = old.filter(|o| !secret.values().any(|r| r == o)) {
            self.forget_secrets(id, vec![old]).await;
        }
        tracing::info!(%id, %name, "secret environment value set");
        Ok(inst)
    }

    /// Reads the API keys and secret environment values of every instance into memory (a
    /// blocking D-Bus round trip each). What cannot be read is reported as
    /// a notice: the instance is then probed without its key and says
    /// "401: check the API key".
    pub async fn load_secrets(&self) -> Vec<String> {
        let refs: Vec<(String, String, String)> = self
            .lock()
            .entries
            .iter()
            .flat_map(|e| {
                let c = &e.instance.config;
                c.secret_refs()
                    .into_iter()
                    .map(|r| (c.id.clone(), c.name.clone(), r))
                    .collect::<Vec<_>>()
            })
            .collect();
        if refs.is_empty() {
            return Vec::new();
        }
        let vault = self.vault();
        let found = tokio::task::spawn_blocking(move || {
            refs.into_iter()
                .map(|(id, name, r)| {
                    let got = vault.load(&r);
                    (id, name, r, got)
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("the keyring task panicked");
        let mut notices = Vec::new();
        for (id, name, reference, got) in found {
            match got {
                Ok(Some(_)) => {}
                Ok(None) => notices.push(format!(
                    "A secret of '{name}' ({id}) is not in the keyring (entry {reference}): enter it again in the instance's settings."
                )),
                Err(e) => notices.push(format!("A secret of '{name}' ({id}) could not be read (entry {reference}): {e}")),
            }
        }
        for n in &notices {
            tracing::warn!("{n}");
        }
        notices
    }
}
