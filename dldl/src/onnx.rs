//! Just enough of the ONNX format to take the weights out of a model file.
//!
//! The pretrained networks are defined as burn modules in this crate; their `.onnx` files are
//! only read for their initialisers (the weight tensors, by name) and their node list (which
//! node produced which output from which initialisers). This is a small protobuf reader for
//! `ModelProto → GraphProto → {NodeProto, TensorProto}`, with no dependency, so it compiles to
//! WebAssembly as well: a protobuf crate and ONNX's generated schema would add to the page's size
//! for the few fields read here.
//!
//! Field numbers are those of `onnx.proto` (ONNX 1.x): ModelProto.graph = 7; GraphProto.node = 1,
//! .initializer = 5; NodeProto.input = 1, .output = 2, .op_type = 4; TensorProto.dims = 1,
//! .data_type = 2, .float_data = 4, .name = 8, .raw_data = 9, .int64_data = 7.

use std::collections::HashMap;

use burn::{
    module::Param,
    tensor::{Device, Tensor, TensorData},
};

use crate::DldlError;

/// A weight tensor stored in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Initializer {
    pub dims: Vec<usize>,
    /// Values in row-major order, converted to `f32` (float and int64 tensors are read).
    pub values: Vec<f32>,
    /// Why the values could not be read (another element type, external data), for tensors
    /// the networks never ask for; asking for one is an error saying this.
    pub unsupported: Option<String>,
}

/// One node of the graph: its operator and the names of its inputs and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// The initialisers and nodes of an ONNX model.
#[derive(Debug, Clone, Default)]
pub struct OnnxWeights {
    pub initializers: HashMap<String, Initializer>,
    pub nodes: Vec<Node>,
}

const FLOAT: u64 = 1;
const INT64: u64 = 7;

impl OnnxWeights {
    /// Reads a serialised `ModelProto`.
    pub fn parse(bytes: &[u8]) -> Result<Self, DldlError> {
        let mut weights = OnnxWeights::default();
        let mut graph_seen = false;
        for field in Fields::new(bytes) {
            let (number, value) = field?;
            if let (7, Value::Bytes(graph)) = (number, value) {
                graph_seen = true;
                weights.read_graph(graph)?;
            }
        }
        if !graph_seen {
            return Err(bad("no graph in the file (is it an ONNX model?)"));
        }
        Ok(weights)
    }

    fn read_graph(&mut self, graph: &[u8]) -> Result<(), DldlError> {
        for field in Fields::new(graph) {
            match field? {
                (1, Value::Bytes(node)) => self.nodes.push(read_node(node)?),
                (5, Value::Bytes(tensor)) => {
                    let (name, tensor) = read_tensor(tensor)?;
                    self.initializers.insert(name, tensor);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The initialiser `name`, checked to have the shape `dims`.
    pub fn tensor(&self, name: &str, dims: &[usize]) -> Result<&Initializer, DldlError> {
        let tensor = self.initializers.get(name).ok_or_else(|| {
            DldlError::WeightsMismatch(format!("the model has no tensor `{name}`"))
        })?;
        if let Some(why) = &tensor.unsupported {
            return Err(DldlError::WeightsMismatch(format!(
                "tensor `{name}` {why}; this reader takes float32 and int64 tensors stored in the \
                 file"
            )));
        }
        if tensor.dims != dims {
            return Err(DldlError::WeightsMismatch(format!(
                "tensor `{name}` has shape {:?}, expected {dims:?}",
                tensor.dims
            )));
        }
        Ok(tensor)
    }

    /// The initialiser `name`, stored with shape `stored`, as a parameter of shape `shape` (the
    /// same values in the same order, e.g. `[1, C, 1, 1]` kept as `[C]`), its subnormal values
    /// flushed to zero. The pretrained age network's file holds 6 667 of them (under 1.2·10⁻³⁸
    /// each, nothing beside its other weights), and on an Intel Xeon they cost its forward
    /// pass about half its speed: 146 against 308 images/s for single chips.
    pub fn param_as<const D: usize>(
        &self,
        name: &str,
        stored: &[usize],
        shape: [usize; D],
        device: &Device,
    ) -> Result<Param<Tensor<D>>, DldlError> {
        let tensor = self.tensor(name, stored)?;
        let values = tensor
            .values
            .iter()
            .map(|&v| {
                if v.is_subnormal() {
                    0.0f32.copysign(v)
                } else {
                    v
                }
            })
            .collect::<Vec<f32>>();
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(values, shape),
            device,
        )))
    }

    /// The initialiser `name`, checked to have the shape `shape`, as a parameter.
    pub fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Param<Tensor<D>>, DldlError> {
        self.param_as(name, &shape, shape, device)
    }

    /// The initialisers feeding the node that produces `output` (e.g. a Conv's weight and bias).
    pub fn node_initializers(&self, output: &str) -> Result<Vec<&str>, DldlError> {
        let node = self
            .nodes
            .iter()
            .find(|node| node.outputs.iter().any(|o| o == output))
            .ok_or_else(|| {
                DldlError::WeightsMismatch(format!("the model has no node `{output}`"))
            })?;
        Ok(node
            .inputs
            .iter()
            .filter(|input| self.initializers.contains_key(input.as_str()))
            .map(String::as_str)
            .collect())
    }
}

fn bad(what: &str) -> DldlError {
    DldlError::CorruptWeights(format!("not an ONNX model: {what}"))
}

fn read_node(bytes: &[u8]) -> Result<Node, DldlError> {
    let mut node = Node {
        op_type: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(s)) => node.inputs.push(utf8(s)?),
            (2, Value::Bytes(s)) => node.outputs.push(utf8(s)?),
            (4, Value::Bytes(s)) => node.op_type = utf8(s)?,
            _ => {}
        }
    }
    Ok(node)
}

fn read_tensor(bytes: &[u8]) -> Result<(String, Initializer), DldlError> {
    let mut name = String::new();
    let mut dims = Vec::new();
    let mut data_type = 0;
    let mut raw: Option<&[u8]> = None;
    let mut floats = Vec::new();
    let mut ints = Vec::new();
    let mut external = false;
    let mut raw_dims = Vec::new();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(d)) => raw_dims.push(d),
            (1, Value::Bytes(packed)) => raw_dims.extend(packed_varints(packed)?),
            // data_location = EXTERNAL: the values live in another file.
            (14, Value::Varint(1)) => external = true,
            (2, Value::Varint(t)) => data_type = t,
            (4, Value::Bytes(packed)) => floats.extend(le_f32s(packed)),
            (4, Value::Fixed32(bits)) => floats.push(f32::from_bits(bits)),
            (7, Value::Bytes(packed)) => ints.extend(packed_varints(packed)?.map(|v| v as i64)),
            (7, Value::Varint(v)) => ints.push(v as i64),
            (8, Value::Bytes(s)) => name = utf8(s)?,
            (9, Value::Bytes(r)) => raw = Some(r),
            _ => {}
        }
    }
    // Dimensions are int64 in the format: a negative one arrives as a huge varint.
    for d in raw_dims {
        let d = i64::from_ne_bytes(d.to_ne_bytes());
        dims.push(usize::try_from(d).map_err(|_| {
            if d < 0 {
                bad(&format!("tensor `{name}` has a negative dimension {d}"))
            } else {
                bad(&format!(
                    "tensor `{name}` has a dimension {d} too large to hold"
                ))
            }
        })?);
    }
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            bad(&format!(
                "tensor `{name}` has a shape {dims:?} too large to hold"
            ))
        })?;
    let unsupported = if external {
        Some("keeps its values in an external file".to_string())
    } else if data_type != FLOAT && data_type != INT64 {
        Some(format!(
            "is stored as {} (ONNX element type {data_type})",
            element_name(data_type)
        ))
    } else {
        None
    };
    let values: Vec<f32> = match (data_type, raw) {
        (FLOAT, Some(raw)) => le_f32s(raw).collect(),
        (FLOAT, None) => floats,
        (INT64, Some(raw)) => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        (INT64, None) => ints.into_iter().map(|v| v as f32).collect(),
        // Other types (strings, quantised weights) are not used by the networks read here.
        _ => Vec::new(),
    };
    if unsupported.is_none() && values.len() != count {
        return Err(bad(&format!(
            "tensor `{name}` holds {} values for shape {dims:?}",
            values.len()
        )));
    }
    Ok((
        name,
        Initializer {
            dims,
            values,
            unsupported,
        },
    ))
}

/// ONNX's name for an element type (`TensorProto.DataType`).
fn element_name(data_type: u64) -> &'static str {
    match data_type {
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        _ => "another element type",
    }
}

/// Little-endian `f32`s, as ONNX stores raw and packed float data.
fn le_f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The numbers of a packed repeated varint field.
fn packed_varints(bytes: &[u8]) -> Result<std::vec::IntoIter<u64>, DldlError> {
    let mut reader = Reader { bytes, at: 0 };
    let mut values = Vec::new();
    while !reader.done() {
        values.push(reader.varint()?);
    }
    Ok(values.into_iter())
}

fn utf8(bytes: &[u8]) -> Result<String, DldlError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("a name is not UTF-8"))
}

enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, DldlError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| bad("the file ends inside a number"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a number is longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DldlError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| bad("the file is truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), DldlError> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| bad("a length is too large"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            wire => return Err(bad(&format!("unknown protobuf wire type {wire}"))),
        };
        Ok((key >> 3, value))
    }
}

/// The fields of one protobuf message, in order.
struct Fields<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            reader: Reader { bytes, at: 0 },
            failed: false,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), DldlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.done() {
            return None;
        }
        let field = self.reader.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    /// A model with one Conv node and a 2×3 float weight stored as raw data.
    fn tiny_model() -> Vec<u8> {
        model_with(&[2, 3], FLOAT, &[])
    }

    /// The same model with the weight's dimensions, element type and extra fields given.
    fn model_with(dims: &[u64], data_type: u64, extra: &[(u64, u64)]) -> Vec<u8> {
        let mut tensor = Vec::new();
        for &d in dims {
            varint(1 << 3, &mut tensor);
            varint(d, &mut tensor);
        }
        varint(2 << 3, &mut tensor);
        varint(data_type, &mut tensor);
        for &(number, value) in extra {
            varint(number << 3, &mut tensor);
            varint(value, &mut tensor);
        }
        bytes_field(8, b"w", &mut tensor);
        let raw: Vec<u8> = (0..6)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        bytes_field(9, &raw, &mut tensor);
        let mut node = Vec::new();
        bytes_field(1, b"x", &mut node);
        bytes_field(1, b"w", &mut node);
        bytes_field(2, b"y", &mut node);
        bytes_field(4, b"Conv", &mut node);
        let mut graph = Vec::new();
        bytes_field(1, &node, &mut graph);
        bytes_field(5, &tensor, &mut graph);
        let mut model = Vec::new();
        varint(1 << 3, &mut model); // ir_version
        varint(8, &mut model);
        bytes_field(7, &graph, &mut model);
        model
    }

    #[test]
    fn subnormal_weights_load_as_zero() {
        let tiny = f32::MIN_POSITIVE / 4.0;
        assert!(tiny.is_subnormal());
        let mut weights = OnnxWeights::default();
        weights.initializers.insert(
            "w".to_string(),
            Initializer {
                dims: vec![4],
                values: vec![tiny, -tiny, f32::MIN_POSITIVE, 0.5],
                unsupported: None,
            },
        );
        let param = weights.param("w", [4], &Device::flex()).unwrap();
        let values: Vec<f32> = param.val().try_into_vec_as().unwrap();
        assert_eq!(values, vec![0.0, -0.0, f32::MIN_POSITIVE, 0.5]);
        assert!(values[1].is_sign_negative());
    }

    #[test]
    fn reads_initializers_and_nodes() {
        let weights = OnnxWeights::parse(&tiny_model()).unwrap();
        let w = weights.tensor("w", &[2, 3]).unwrap();
        assert_eq!(w.values, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(weights.node_initializers("y").unwrap(), vec!["w"]);
        assert_eq!(weights.nodes[0].op_type, "Conv");
    }

    #[test]
    fn wrong_shapes_and_names_are_named() {
        let weights = OnnxWeights::parse(&tiny_model()).unwrap();
        let err = weights.tensor("w", &[3, 2]).unwrap_err().to_string();
        assert!(
            err.contains("`w` has shape [2, 3], expected [3, 2]"),
            "{err}"
        );
        let err = weights.tensor("v", &[1]).unwrap_err().to_string();
        assert!(err.contains("no tensor `v`"), "{err}");
    }

    #[test]
    fn other_element_types_external_data_and_odd_shapes_are_named() {
        for (data_type, name) in [(10, "float16"), (11, "double"), (16, "bfloat16")] {
            let weights = OnnxWeights::parse(&model_with(&[2, 3], data_type, &[])).unwrap();
            let err = weights.tensor("w", &[2, 3]).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("float32"), "{err}");
        }
        let external = OnnxWeights::parse(&model_with(&[2, 3], FLOAT, &[(14, 1)])).unwrap();
        let err = external.tensor("w", &[2, 3]).unwrap_err().to_string();
        assert!(err.contains("external file"), "{err}");
        let negative = OnnxWeights::parse(&model_with(&[2, (-3i64) as u64], FLOAT, &[]));
        assert!(
            negative
                .unwrap_err()
                .to_string()
                .contains("negative dimension -3")
        );
        let huge = OnnxWeights::parse(&model_with(&[1 << 40, 1 << 40], FLOAT, &[]));
        assert!(huge.unwrap_err().to_string().contains("too large"));
        // A float tensor whose values do not fill its shape.
        let short = OnnxWeights::parse(&model_with(&[3, 3], FLOAT, &[]));
        assert!(short.unwrap_err().to_string().contains("holds 6 values"));
    }

    #[test]
    fn truncated_and_foreign_files_are_rejected() {
        let model = tiny_model();
        let err = OnnxWeights::parse(&model[..model.len() - 5]).unwrap_err();
        assert!(matches!(err, DldlError::CorruptWeights(_)), "{err}");
        let err = OnnxWeights::parse(b"\x89PNG\r\n\x1a\n not a model").unwrap_err();
        assert!(matches!(err, DldlError::CorruptWeights(_)), "{err}");
    }
}
