//! Creates template.yaml's resources in the emulator with direct SDK calls
//! (moto's CloudFormation silently drops SSE, TTL, PITR, versioning and
//! public-access blocks, so it is not used). A property this code does not know
//! is an error, so the template and the local stack cannot drift apart.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, SseType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, DefaultRetention,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
    ObjectOwnership, OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, VersioningConfiguration,
};
use serde_json::Value;
use thiserror::Error;

use crate::template::{Physical, Resolver, Template, TemplateError};

/// The account id moto reports.
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";
/// Template parameters the local stack sets otherwise than their defaults: its
/// webhook receivers listen on plain HTTP on loopback.
pub const LOCAL_PARAMETERS: [(&str, &str); 1] = [("WebhookAllowLoopback", "true")];

#[derive(Debug, Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{resource}: property {property} is not supported by the local stack")]
    Unsupported { resource: String, property: String },
    #[error("{resource}: {detail}")]
    Aws { resource: String, detail: String },
}

fn aws_error(resource: &str, error: impl std::error::Error) -> ProvisionError {
    ProvisionError::Aws {
        resource: resource.to_owned(),
        detail: aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
    }
}

/// A route of the HTTP API and the function behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
    /// False when the route opts out of the default authorizer (`Auth: {Authorizer: NONE}`).
    pub authorized: bool,
}

/// The HTTP API's default Lambda authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAuthorizer {
    pub function_logical_id: String,
    /// Lower-case header names that form the identity (and the cache key).
    pub identity_headers: Vec<String>,
    pub cache_seconds: u64,
}

/// A `Schedule` (EventBridge rule) or `ScheduleV2` (EventBridge Scheduler) event
/// of a function. The emulator never fires schedules: the local stack does, on
/// request (`vigil-local --schedules`), or `vigil-local invoke` runs one by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSchedule {
    /// The event's name under the function's `Events`.
    pub name: String,
    /// `Schedule` or `ScheduleV2`.
    pub kind: String,
    /// `rate(5 minutes)` or `cron(...)`.
    pub expression: String,
    /// What the function receives: the event's `Input`, else what AWS sends.
    pub input: Option<Value>,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct LocalFunction {
    pub logical_id: String,
    /// The crate binary (`Metadata.BuildProperties.Binary`): picks the handler.
    pub binary: String,
    /// `Environment.Variables` with local names substituted.
    pub environment: HashMap<String, String>,
    pub routes: Vec<Route>,
    pub schedules: Vec<LocalSchedule>,
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub stack_name: String,
    pub region: String,
    pub resources: HashMap<String, Physical>,
    pub functions: Vec<LocalFunction>,
    pub authorizer: Option<LocalAuthorizer>,
}

impl Provisioned {
    pub fn reference(&self, logical_id: &str) -> Option<&str> {
        self.resources.get(logical_id).map(|p| p.reference.as_str())
    }
}

fn check_known(resource: &str, props: &Value, known: &[&str]) -> Result<(), ProvisionError> {
    if let Some(object) = props.as_object() {
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ProvisionError::Unsupported {
                resource: resource.to_owned(),
                property: unknown.clone(),
            });
        }
    }
    Ok(())
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

fn truthy(value: Option<&Value>) -> bool {
    matches!(value, Some(Value::Bool(true)))
        || matches!(value, Some(Value::String(s)) if s == "true")
}

/// Creates every resource of `template` under `stack_name`, in dependency order.
pub async fn provision(
    template: &Template,
    sdk: &SdkConfig,
    stack_name: &str,
) -> Result<Provisioned, ProvisionError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "eu-west-3".to_owned());
    let kms = aws_sdk_kms::Client::new(sdk);
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let mut resources: HashMap<String, Physical> = HashMap::new();
    let mut parameters = template.parameter_defaults.clone();
    for (name, value) in LOCAL_PARAMETERS {
        if parameters.contains_key(name) {
            parameters.insert(name.to_owned(), value.to_owned());
        }
    }
    let mut functions = Vec::new();
    let mut authorizer = None;

    // Kinds in dependency order; within a kind, the template's order.
    let order = [
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::Logs::LogGroup",
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Events::EventBus",
        "AWS::CloudWatch::Alarm",
        "AWS::Serverless::HttpApi",
        "AWS::Serverless::Function",
    ];
    if let Some(other) = template
        .resources
        .iter()
        .find(|r| !order.contains(&r.kind.as_str()))
    {
        return Err(ProvisionError::Unsupported {
            resource: other.logical_id.clone(),
            property: format!("Type {}", other.kind),
        });
    }
    for kind in order {
        for resource in template.of_kind(kind) {
            let id = resource.logical_id.as_str();
            if kind == "AWS::Serverless::HttpApi" {
                // Not resolved: its authorizer refers to a function whose events refer to it.
                authorizer = http_api_authorizer(id, &resource.properties)?;
                resources.insert(
                    id.to_owned(),
                    Physical {
                        reference: format!("{stack_name}-{id}"),
                        ..Physical::default()
                    },
                );
                continue;
            }
            let props = Resolver {
                stack_name,
                region: &region,
                account_id: LOCAL_ACCOUNT_ID,
                parameters: &parameters,
                resources: &resources,
            }
            .resolve(&resource.properties)?;
            let physical = match kind {
                "AWS::KMS::Key" => create_key(&kms, id, &props).await?,
                "AWS::KMS::Alias" => {
                    let name = text(&props, &["AliasName"]).unwrap_or_default().to_owned();
                    kms.create_alias()
                        .alias_name(&name)
                        .target_key_id(text(&props, &["TargetKeyId"]).unwrap_or_default())
                        .send()
                        .await
                        .map_err(|e| aws_error(id, e))?;
                    Physical {
                        reference: name,
                        ..Physical::default()
                    }
                }
                "AWS::Events::EventBus" => {
                    check_known(id, &props, &["Name"])?;
                    let name = text(&props, &["Name"]).unwrap_or(id).to_owned();
                    let out = events
                        .create_event_bus()
                        .name(&name)
                        .send()
                        .await
                        .map_err(|e| aws_error(id, e))?;
                    Physical {
                        attributes: [
                            ("Arn".to_owned(), out.event_bus_arn.unwrap_or_default()),
                            ("Name".to_owned(), name.clone()),
                        ]
                        .into(),
                        reference: name,
                    }
                }
                "AWS::DynamoDB::Table" => {
                    create_table(&dynamodb, id, &format!("{stack_name}-{id}"), &props).await?
                }
                "AWS::S3::Bucket" => {
                    let name = format!("{stack_name}-{id}").to_lowercase();
                    create_bucket(&s3, id, &name, &region, &props).await?
                }
                "AWS::S3::BucketPolicy" => {
                    check_known(id, &props, &["Bucket", "PolicyDocument"])?;
                    if let Some(policy) = local_bucket_policy(&props["PolicyDocument"]) {
                        s3.put_bucket_policy()
                            .bucket(text(&props, &["Bucket"]).unwrap_or_default())
                            .policy(policy.to_string())
                            .send()
                            .await
                            .map_err(|e| aws_error(id, e))?;
                    }
                    Physical {
                        reference: id.to_owned(),
                        ..Physical::default()
                    }
                }
                "AWS::Serverless::Function" => {
                    let binary = resource
                        .metadata
                        .get("BuildProperties")
                        .and_then(|b| b.get("Binary"))
                        .and_then(|b| b.as_str())
                        .ok_or_else(|| ProvisionError::Unsupported {
                            resource: id.to_owned(),
                            property: "Metadata.BuildProperties.Binary (missing)".into(),
                        })?
                        .to_owned();
                    functions.push(local_function(id, binary, &props)?);
                    Physical {
                        reference: format!("{stack_name}-{id}"),
                        ..Physical::default()
                    }
                }
                // Log groups, queues, alarms and the HTTP API have no emulator
                // counterpart: the local server is the API, logs go to the
                // terminal, a failed local invocation is reported to its caller.
                _ => {
                    let name = format!("{stack_name}-{id}");
                    let arn = format!("arn:aws:local:{region}:{LOCAL_ACCOUNT_ID}:{name}");
                    Physical {
                        attributes: [
                            ("Arn".to_owned(), arn),
                            ("QueueName".to_owned(), name.clone()),
                        ]
                        .into(),
                        reference: name,
                    }
                }
            };
            resources.insert(id.to_owned(), physical);
        }
    }
    Ok(Provisioned {
        stack_name: stack_name.to_owned(),
        region,
        resources,
        functions,
        authorizer,
    })
}

/// The default authorizer of an `AWS::Serverless::HttpApi`, read from its raw properties.
fn http_api_authorizer(
    id: &str,
    props: &serde_yaml::Value,
) -> Result<Option<LocalAuthorizer>, ProvisionError> {
    let Some(auth) = props.get("Auth") else {
        return Ok(None);
    };
    let unsupported = |property: &str| ProvisionError::Unsupported {
        resource: id.to_owned(),
        property: property.to_owned(),
    };
    let Some(default) = auth.get("DefaultAuthorizer").and_then(|d| d.as_str()) else {
        return Ok(None);
    };
    let authorizer = auth
        .get("Authorizers")
        .and_then(|a| a.get(default))
        .ok_or_else(|| unsupported("Auth.DefaultAuthorizer (not declared)"))?;
    if authorizer
        .get("EnableSimpleResponses")
        .and_then(|v| v.as_bool())
        != Some(true)
    {
        return Err(unsupported(
            "Auth.Authorizers (only simple responses are emulated)",
        ));
    }
    // `!GetAtt Function.Arn`, as a tag or as a `Fn::GetAtt` mapping.
    let target = match authorizer.get("FunctionArn") {
        Some(serde_yaml::Value::Tagged(tagged)) if tagged.tag == "GetAtt" => {
            tagged.value.as_str().map(str::to_owned)
        }
        Some(other) => other
            .get("Fn::GetAtt")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        None => None,
    }
    .and_then(|path| path.strip_suffix(".Arn").map(str::to_owned))
    .ok_or_else(|| unsupported("Auth.Authorizers.FunctionArn (expected !GetAtt <Function>.Arn)"))?;
    let identity = authorizer.get("Identity");
    let identity_headers = identity
        .and_then(|i| i.get("Headers"))
        .and_then(|h| h.as_sequence())
        .map(|headers| {
            headers
                .iter()
                .filter_map(|h| h.as_str())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_else(|| vec!["authorization".to_owned()]);
    let cache_seconds = identity
        .and_then(|i| i.get("ReauthorizeEvery"))
        .and_then(|v| v.as_u64())
        .unwrap_or(300);
    Ok(Some(LocalAuthorizer {
        function_logical_id: target,
        identity_headers,
        cache_seconds,
    }))
}

/// The statements of a bucket policy the emulator can evaluate. moto 5.2.5 counts
/// a condition it does not understand as a deny, so a TLS-only statement
/// (`aws:SecureTransport`) would deny every request, over HTTP and HTTPS alike.
/// That one statement is left out locally (the template keeps it, and a test
/// checks it there); None when nothing is left.
pub fn local_bucket_policy(document: &Value) -> Option<Value> {
    let mut document = document.clone();
    let statements = document.get_mut("Statement")?.as_array_mut()?;
    statements.retain(|statement| {
        let secure_transport_only = statement
            .get("Condition")
            .map(|condition| condition.to_string().contains("aws:SecureTransport"))
            .unwrap_or(false);
        if secure_transport_only {
            let sid = statement.get("Sid").and_then(|sid| sid.as_str());
            tracing::info!(
                statement = sid.unwrap_or_default(),
                "bucket policy statement left out locally: the emulator cannot evaluate aws:SecureTransport"
            );
        }
        !secure_transport_only
    });
    (!statements.is_empty()).then_some(document)
}

/// The event types of a function the local stack knows; any other is an error,
/// so that a new kind of trigger cannot be silently ignored.
const EVENT_TYPES: [&str; 3] = ["HttpApi", "Schedule", "ScheduleV2"];

fn local_function(
    id: &str,
    binary: String,
    props: &Value,
) -> Result<LocalFunction, ProvisionError> {
    let environment = props
        .pointer("/Environment/Variables")
        .and_then(Value::as_object)
        .map(|vars| {
            vars.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let unsupported = |property: String| ProvisionError::Unsupported {
        resource: id.to_owned(),
        property,
    };
    let mut routes = Vec::new();
    let mut schedules = Vec::new();
    for (name, event) in props
        .get("Events")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let kind = text(event, &["Type"]).unwrap_or_default();
        if !EVENT_TYPES.contains(&kind) {
            return Err(unsupported(format!("Events.{name}.Type {kind}")));
        }
        let field = |path: &[&str]| {
            text(event, path)
                .ok_or_else(|| unsupported(format!("Events.{name}.{} (missing)", path.join("."))))
        };
        if kind == "HttpApi" {
            routes.push(Route {
                method: field(&["Properties", "Method"])?.to_uppercase(),
                path: field(&["Properties", "Path"])?.to_owned(),
                authorized: text(event, &["Properties", "Auth", "Authorizer"]) != Some("NONE"),
            });
            continue;
        }
        let expression = field(&["Properties", "Schedule"])
            .or_else(|_| field(&["Properties", "ScheduleExpression"]))?
            .to_owned();
        let input =
            match event.pointer("/Properties/Input") {
                None => None,
                Some(Value::String(text)) => Some(serde_json::from_str(text).map_err(|_| {
                    unsupported(format!("Events.{name}.Properties.Input (not JSON)"))
                })?),
                Some(other) => Some(other.clone()),
            };
        let enabled = match event.pointer("/Properties/State").and_then(Value::as_str) {
            Some(state) => state == "ENABLED",
            None => event
                .pointer("/Properties/Enabled")
                .is_none_or(|v| truthy(Some(v))),
        };
        schedules.push(LocalSchedule {
            name: name.clone(),
            kind: kind.to_owned(),
            expression,
            input,
            enabled,
        });
    }
    Ok(LocalFunction {
        logical_id: id.to_owned(),
        binary,
        environment,
        routes,
        schedules,
    })
}

async fn create_key(
    kms: &aws_sdk_kms::Client,
    id: &str,
    props: &Value,
) -> Result<Physical, ProvisionError> {
    check_known(
        id,
        props,
        &[
            "Description",
            "EnableKeyRotation",
            "PendingWindowInDays",
            "KeyPolicy",
            "KeySpec",
            "KeyUsage",
        ],
    )?;
    let mut request = kms
        .create_key()
        .description(text(props, &["Description"]).unwrap_or(id));
    if let Some(spec) = text(props, &["KeySpec"]) {
        request = request.key_spec(spec.into());
    }
    if let Some(usage) = text(props, &["KeyUsage"]) {
        request = request.key_usage(usage.into());
    }
    if let Some(policy) = props.get("KeyPolicy") {
        request = request.policy(policy.to_string());
    }
    let out = request.send().await.map_err(|e| aws_error(id, e))?;
    let metadata = out.key_metadata.ok_or_else(|| ProvisionError::Aws {
        resource: id.to_owned(),
        detail: "CreateKey returned no metadata".into(),
    })?;
    if truthy(props.get("EnableKeyRotation")) {
        kms.enable_key_rotation()
            .key_id(&metadata.key_id)
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    Ok(Physical {
        reference: metadata.key_id.clone(),
        attributes: [("Arn".to_owned(), metadata.arn.unwrap_or_default())].into(),
    })
}

fn key_schema(id: &str, value: &Value) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|element| {
            KeySchemaElement::builder()
                .attribute_name(text(element, &["AttributeName"]).unwrap_or_default())
                .key_type(KeyType::from(
                    text(element, &["KeyType"]).unwrap_or_default(),
                ))
                .build()
                .map_err(|e| aws_error(id, e))
        })
        .collect()
}

async fn create_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    id: &str,
    name: &str,
    props: &Value,
) -> Result<Physical, ProvisionError> {
    check_known(
        id,
        props,
        &[
            "BillingMode",
            "AttributeDefinitions",
            "KeySchema",
            "GlobalSecondaryIndexes",
            "SSESpecification",
            "PointInTimeRecoverySpecification",
            "TimeToLiveSpecification",
            "DeletionProtectionEnabled",
        ],
    )?;
    let mut request = dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(
            text(props, &["BillingMode"]).unwrap_or("PAY_PER_REQUEST"),
        ))
        .set_key_schema(Some(key_schema(id, &props["KeySchema"])?))
        .deletion_protection_enabled(truthy(props.get("DeletionProtectionEnabled")));
    for definition in props["AttributeDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(definition, &["AttributeName"]).unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    text(definition, &["AttributeType"]).unwrap_or_default(),
                ))
                .build()
                .map_err(|e| aws_error(id, e))?,
        );
    }
    for index in props["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut projection = Projection::builder().projection_type(ProjectionType::from(
            text(index, &["Projection", "ProjectionType"]).unwrap_or("ALL"),
        ));
        for attribute in index
            .pointer("/Projection/NonKeyAttributes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            projection = projection.non_key_attributes(attribute.as_str().unwrap_or_default());
        }
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(index, &["IndexName"]).unwrap_or_default())
                .set_key_schema(Some(key_schema(id, &index["KeySchema"])?))
                .projection(projection.build())
                .build()
                .map_err(|e| aws_error(id, e))?,
        );
    }
    if let Some(sse) = props.get("SSESpecification") {
        request = request.sse_specification(
            SseSpecification::builder()
                .enabled(truthy(sse.get("SSEEnabled")))
                .sse_type(SseType::from(text(sse, &["SSEType"]).unwrap_or("KMS")))
                .set_kms_master_key_id(text(sse, &["KMSMasterKeyId"]).map(str::to_owned))
                .build(),
        );
    }
    let out = request.send().await.map_err(|e| aws_error(id, e))?;
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(text(ttl, &["AttributeName"]).unwrap_or_default())
                    .enabled(truthy(ttl.get("Enabled")))
                    .build()
                    .map_err(|e| aws_error(id, e))?,
            )
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    if truthy(props.pointer("/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled")) {
        dynamodb
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .map_err(|e| aws_error(id, e))?,
            )
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    let arn = out
        .table_description
        .and_then(|d| d.table_arn)
        .unwrap_or_default();
    Ok(Physical {
        reference: name.to_owned(),
        attributes: [("Arn".to_owned(), arn)].into(),
    })
}

async fn create_bucket(
    s3: &aws_sdk_s3::Client,
    id: &str,
    name: &str,
    region: &str,
    props: &Value,
) -> Result<Physical, ProvisionError> {
    check_known(
        id,
        props,
        &[
            "BucketEncryption",
            "VersioningConfiguration",
            "PublicAccessBlockConfiguration",
            "OwnershipControls",
            "ObjectLockEnabled",
            "ObjectLockConfiguration",
            // Not emulated: access logs and expiry have no local effect to test.
            "LoggingConfiguration",
            "LifecycleConfiguration",
        ],
    )?;
    s3.create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(truthy(props.get("ObjectLockEnabled")))
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_error(id, e))?;
    for rule in props
        .pointer("/BucketEncryption/ServerSideEncryptionConfiguration")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(
                text(rule, &["ServerSideEncryptionByDefault", "SSEAlgorithm"]).unwrap_or("aws:kms"),
            ))
            .set_kms_master_key_id(
                text(rule, &["ServerSideEncryptionByDefault", "KMSMasterKeyID"]).map(str::to_owned),
            )
            .build()
            .map_err(|e| aws_error(id, e))?;
        s3.put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(default)
                            .bucket_key_enabled(truthy(rule.get("BucketKeyEnabled")))
                            .build(),
                    )
                    .build()
                    .map_err(|e| aws_error(id, e))?,
            )
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    if let Some(status) = text(props, &["VersioningConfiguration", "Status"]) {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::from(status))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    if let Some(block) = props.get("PublicAccessBlockConfiguration") {
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(truthy(block.get("BlockPublicAcls")))
                    .block_public_policy(truthy(block.get("BlockPublicPolicy")))
                    .ignore_public_acls(truthy(block.get("IgnorePublicAcls")))
                    .restrict_public_buckets(truthy(block.get("RestrictPublicBuckets")))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    if let Some(ownership) = props
        .pointer("/OwnershipControls/Rules/0/ObjectOwnership")
        .and_then(Value::as_str)
    {
        s3.put_bucket_ownership_controls()
            .bucket(name)
            .ownership_controls(
                OwnershipControls::builder()
                    .rules(
                        OwnershipControlsRule::builder()
                            .object_ownership(ObjectOwnership::from(ownership))
                            .build()
                            .map_err(|e| aws_error(id, e))?,
                    )
                    .build()
                    .map_err(|e| aws_error(id, e))?,
            )
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    if let Some(retention) = props.pointer("/ObjectLockConfiguration/Rule/DefaultRetention") {
        let days = retention.get("Days").and_then(|d| {
            d.as_i64()
                .or_else(|| d.as_str().and_then(|t| t.parse().ok()))
        });
        let rule = ObjectLockRule::builder()
            .default_retention(
                DefaultRetention::builder()
                    .mode(ObjectLockRetentionMode::from(
                        text(retention, &["Mode"]).unwrap_or("COMPLIANCE"),
                    ))
                    .set_days(days.and_then(|d| i32::try_from(d).ok()))
                    .build(),
            )
            .build();
        s3.put_object_lock_configuration()
            .bucket(name)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(rule)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error(id, e))?;
    }
    Ok(Physical {
        reference: name.to_owned(),
        attributes: [("Arn".to_owned(), format!("arn:aws:s3:::{name}"))].into(),
    })
}
