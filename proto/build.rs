//! Compiles the .proto files with protox (pure Rust), so building needs no system protoc.
//! The enums that the CLI takes as flag values derive clap's `ValueEnum`, so that the CLI's
//! accepted values are the proto's own list (UNSPECIFIED is never offered).

/// Enums given on the command line, and their UNSPECIFIED values.
const CLI_ENUMS: [(&str, &str); 8] = [
    ("DiskInterface", "DISK_INTERFACE_UNSPECIFIED"),
    ("HaPriority", "HA_PRIORITY_UNSPECIFIED"),
    ("Polarity", "POLARITY_UNSPECIFIED"),
    ("DomainType", "DOMAIN_TYPE_UNSPECIFIED"),
    ("MigrationPolicy", "MIGRATION_POLICY_UNSPECIFIED"),
    ("ResumeBehavior", "RESUME_BEHAVIOR_UNSPECIFIED"),
    ("SchedulingPolicy", "SCHEDULING_POLICY_UNSPECIFIED"),
    ("EngineMaintenanceMode", "ENGINE_MAINTENANCE_MODE_UNSPECIFIED"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/corral.proto"];
    let descriptors = protox::compile(files, ["proto"])?;
    // A malformed request is InvalidArgument, not Internal (`codec.rs`).
    let mut config =
        tonic_prost_build::configure().build_server(true).build_client(true).codec_path("crate::codec::StrictCodec");
    for (name, unspecified) in CLI_ENUMS {
        config = config
            .enum_attribute(format!(".corral.v1.{name}"), "#[derive(clap::ValueEnum)]")
            .enum_attribute(format!(".corral.v1.{name}"), "#[value(rename_all = \"snake_case\")]")
            .field_attribute(format!(".corral.v1.{name}.{unspecified}"), "#[value(skip)]");
    }
    // libvirt's test driver type is accepted (a host on test:///default runs nothing else)
    // but not offered: it runs nowhere else.
    config = config.field_attribute(".corral.v1.DomainType.DOMAIN_TYPE_TEST", "#[value(hide = true)]");
    // The descriptors themselves, for the REST gateway's JSON mapping and OpenAPI document and
    // for gRPC server reflection (`FILE_DESCRIPTOR_SET`).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("corral_descriptors.bin"), prost::Message::encode_to_vec(&descriptors))?;
    config.compile_fds(descriptors)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
