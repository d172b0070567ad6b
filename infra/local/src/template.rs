//! Reads template.yaml: resources, their properties, and CloudFormation
//! intrinsics (`!Ref`, `!GetAtt`, `!Sub`) resolved against the local resources.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Shape(String),
    #[error("template: cannot resolve {0} locally")]
    Unresolved(String),
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Yaml,
    pub metadata: Yaml,
}

#[derive(Debug, Clone)]
pub struct Template {
    /// In the template's order (which is also a valid creation order for vigil's template).
    pub resources: Vec<Resource>,
    pub parameter_defaults: HashMap<String, String>,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let doc: Yaml = serde_yaml::from_str(text)?;
        let resources = doc
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .ok_or_else(|| TemplateError::Shape("no Resources section".into()))?
            .iter()
            .map(|(id, body)| {
                let logical_id = id
                    .as_str()
                    .ok_or_else(|| TemplateError::Shape("a resource id is not a string".into()))?
                    .to_owned();
                let kind = body
                    .get("Type")
                    .and_then(Yaml::as_str)
                    .ok_or_else(|| TemplateError::Shape(format!("{logical_id} has no Type")))?
                    .to_owned();
                Ok(Resource {
                    logical_id,
                    kind,
                    properties: body.get("Properties").cloned().unwrap_or(Yaml::Null),
                    metadata: body.get("Metadata").cloned().unwrap_or(Yaml::Null),
                })
            })
            .collect::<Result<Vec<_>, TemplateError>>()?;
        let parameter_defaults = doc
            .get("Parameters")
            .and_then(Yaml::as_mapping)
            .map(|params| {
                params
                    .iter()
                    .filter_map(|(name, body)| {
                        let default = match body.get("Default")? {
                            Yaml::String(s) => s.clone(),
                            Yaml::Number(n) => n.to_string(),
                            Yaml::Bool(b) => b.to_string(),
                            _ => return None,
                        };
                        Some((name.as_str()?.to_owned(), default))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            resources,
            parameter_defaults,
        })
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.iter().filter(move |r| r.kind == kind)
    }
}

/// What `!Ref` and `!GetAtt` give for a resource created locally.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    pub reference: String,
    pub attributes: BTreeMap<String, String>,
}

/// Resolves intrinsics against the resources created so far.
pub struct Resolver<'a> {
    pub stack_name: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    pub parameters: &'a HashMap<String, String>,
    pub resources: &'a HashMap<String, Physical>,
}

impl Resolver<'_> {
    fn reference(&self, name: &str) -> Result<String, TemplateError> {
        match name {
            "AWS::StackName" => Ok(self.stack_name.to_owned()),
            "AWS::Region" => Ok(self.region.to_owned()),
            "AWS::AccountId" => Ok(self.account_id.to_owned()),
            "AWS::Partition" => Ok("aws".to_owned()),
            "AWS::URLSuffix" => Ok("amazonaws.com".to_owned()),
            _ => self
                .parameters
                .get(name)
                .cloned()
                .or_else(|| self.resources.get(name).map(|p| p.reference.clone()))
                .ok_or_else(|| TemplateError::Unresolved(format!("Ref {name}"))),
        }
    }

    fn attribute(&self, path: &str) -> Result<String, TemplateError> {
        let (id, attribute) = path
            .split_once('.')
            .ok_or_else(|| TemplateError::Unresolved(format!("GetAtt {path}")))?;
        self.resources
            .get(id)
            .and_then(|p| p.attributes.get(attribute))
            .cloned()
            .ok_or_else(|| TemplateError::Unresolved(format!("GetAtt {path}")))
    }

    fn substitute(&self, text: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| TemplateError::Unresolved(format!("Sub {text}")))?;
            let name = &rest[start + 2..start + end];
            out.push_str(&if name.contains('.') {
                self.attribute(name)?
            } else {
                self.reference(name)?
            });
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A template value as JSON, intrinsics resolved.
    pub fn resolve(&self, value: &Yaml) -> Result<Json, TemplateError> {
        Ok(match value {
            Yaml::Null => Json::Null,
            Yaml::Bool(b) => Json::Bool(*b),
            Yaml::Number(n) => serde_json::to_value(n).unwrap_or(Json::Null),
            Yaml::String(s) => Json::String(s.clone()),
            Yaml::Sequence(items) => Json::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<_, _>>()?,
            ),
            Yaml::Mapping(map) => {
                if map.len() == 1 {
                    if let Some((Yaml::String(key), inner)) = map.iter().next() {
                        if let Some(resolved) = self.function(key, inner)? {
                            return Ok(resolved);
                        }
                    }
                }
                let mut object = serde_json::Map::new();
                for (key, inner) in map {
                    let key = key.as_str().ok_or_else(|| {
                        TemplateError::Shape("a mapping key is not a string".into())
                    })?;
                    object.insert(key.to_owned(), self.resolve(inner)?);
                }
                Json::Object(object)
            }
            Yaml::Tagged(tagged) => {
                let name = format!("Fn::{}", tagged.tag.to_string().trim_start_matches('!'));
                let name = if name == "Fn::Ref" {
                    "Ref".to_owned()
                } else {
                    name
                };
                self.function(&name, &tagged.value)?
                    .ok_or_else(|| TemplateError::Unresolved(tagged.tag.to_string()))?
            }
        })
    }

    fn function(&self, name: &str, arg: &Yaml) -> Result<Option<Json>, TemplateError> {
        let text = |v: &Yaml| v.as_str().map(str::to_owned);
        Ok(Some(Json::String(match name {
            "Ref" => self.reference(&text(arg).unwrap_or_default())?,
            "Fn::GetAtt" => match arg {
                Yaml::String(path) => self.attribute(path)?,
                Yaml::Sequence(parts) => {
                    let parts: Vec<String> = parts.iter().filter_map(text).collect();
                    self.attribute(&parts.join("."))?
                }
                _ => return Err(TemplateError::Unresolved("GetAtt".into())),
            },
            "Fn::Sub" => match arg {
                Yaml::String(s) => self.substitute(s)?,
                _ => return Err(TemplateError::Unresolved("Sub with variables".into())),
            },
            _ => return Ok(None),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_ref_getatt_and_sub() {
        let template = Template::parse(
            "Parameters:\n  Days:\n    Type: Number\n    Default: 90\nResources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      A: !Ref T\n      B: !GetAtt T.Arn\n      C: !Sub ${AWS::StackName}-x-${T}\n      D: {Ref: Days}\n",
        )
        .expect("template");
        let resources = HashMap::from([(
            "T".to_owned(),
            Physical {
                reference: "table".into(),
                attributes: BTreeMap::from([("Arn".to_owned(), "arn:t".to_owned())]),
            },
        )]);
        let resolver = Resolver {
            stack_name: "s",
            region: "eu-west-3",
            account_id: "123",
            parameters: &template.parameter_defaults,
            resources: &resources,
        };
        let props = resolver
            .resolve(&template.resources[0].properties)
            .expect("resolved");
        assert_eq!(props["A"], "table");
        assert_eq!(props["B"], "arn:t");
        assert_eq!(props["C"], "s-x-table");
        assert_eq!(props["D"], "90");
    }
}
