//! `meridian cluster list`.

use clap::Subcommand;

use super::{
    client::{Client, decode},
    exit::{CliError, Exit},
    model::{Cluster, Items},
    output::{Format, Table, print_json},
};

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// List the clusters Meridian may change.
    List,
}

pub async fn run(
    command: ClusterCommand,
    client: &Client,
    format: Format,
) -> Result<Exit, CliError> {
    match command {
        ClusterCommand::List => {
            let raw = client.get("/clusters", &[]).await?;
            if format == Format::Json {
                print_json(&raw);
                return Ok(Exit::Success);
            }
            let clusters: Items<Cluster> = decode(raw)?;
            let mut table = Table::new(&["NAME", "REGION", "TIMEZONE", "LABELS"]);
            for cluster in &clusters.items {
                let labels: Vec<String> = cluster
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                table.row(vec![
                    cluster.name.as_str().into(),
                    cluster.region.as_str().into(),
                    cluster.timezone.as_str().into(),
                    labels.join(",").into(),
                ]);
            }
            print!("{}", table.render());
            Ok(Exit::Success)
        }
    }
}
