// Loads twlac's onnx.proto (beside this file) into protobufjs and describes the decoded
// messages as TypeScript types. Field names keep onnx.proto's snake_case. Fields not
// declared in the schema come back in `$unknowns` as encoded fields (tag included).
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import type Long from 'long';

const root = protobuf.parse(readFileSync(new URL('./onnx.proto', import.meta.url), 'utf8'), { keepCase: true }).root;

export const ModelProto = root.lookupType('onnx.ModelProto');
export const AttributeProto = root.lookupType('onnx.AttributeProto');
export const TypeProto = root.lookupType('onnx.TypeProto');
export const TensorProto = root.lookupType('onnx.TensorProto');

export type Int64 = Long | number;

interface WithUnknowns {
  $unknowns?: Uint8Array[];
}

export interface StringStringEntry {
  key?: string;
  value?: string;
}

export interface OperatorSetIdMsg {
  domain?: string;
  version?: Int64;
}

export interface ModelMsg extends WithUnknowns {
  ir_version?: Int64;
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph?: GraphMsg;
  opset_import?: OperatorSetIdMsg[];
  metadata_props?: StringStringEntry[];
}

export interface GraphMsg extends WithUnknowns {
  node?: NodeMsg[];
  name?: string;
  initializer?: TensorMsg[];
  doc_string?: string;
  input?: ValueInfoMsg[];
  output?: ValueInfoMsg[];
  value_info?: ValueInfoMsg[];
}

export interface NodeMsg extends WithUnknowns {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  attribute?: AttributeMsg[];
  domain?: string;
}

/** AttributeProto.AttributeType values. */
export const ATTR = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
} as const;

export interface AttributeMsg extends WithUnknowns {
  name?: string;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorMsg;
  g?: GraphMsg;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: Uint8Array[];
  graphs?: Uint8Array[];
  tp?: Uint8Array;
  type_protos?: Uint8Array[];
  type?: number;
  ref_attr_name?: string;
  sparse_tensor?: Uint8Array;
  sparse_tensors?: Uint8Array[];
}

export interface ValueInfoMsg extends WithUnknowns {
  name?: string;
  type?: TypeMsg;
}

export interface TypeMsg extends WithUnknowns {
  tensor_type?: { elem_type?: number; shape?: { dim?: DimMsg[] } & WithUnknowns } & WithUnknowns;
}

export interface DimMsg extends WithUnknowns {
  dim_value?: Int64;
  dim_param?: string;
}

export interface TensorMsg extends WithUnknowns {
  dims?: Int64[];
  data_type?: number;
  segment?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: Int64[];
  name?: string;
  raw_data?: Uint8Array;
  double_data?: number[];
  uint64_data?: Int64[];
  external_data?: StringStringEntry[];
  data_location?: number;
}

/** TensorProto.DataLocation.EXTERNAL */
export const DATA_LOCATION_EXTERNAL = 1;

/** Decode with unknown fields kept (protobufjs discards them by default). */
export function decodeKeepingUnknowns<T>(type: protobuf.Type, bytes: Uint8Array): T {
  const reader = protobuf.Reader.create(bytes);
  reader.discardUnknown = false;
  return type.decode(reader) as unknown as T;
}

export function encode(type: protobuf.Type, msg: object): Uint8Array {
  return type.encode(msg as never).finish();
}
