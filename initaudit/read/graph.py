"""Every graph of a model as a scope: the main graph, control-flow bodies, functions.

A name used in a scope resolves to what defines it there — an initializer, a node
output, a function's formal input — or, failing that, in the enclosing scope, as
ONNX's scoping rules say for If/Loop/Scan bodies.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import onnx
from onnx import AttributeProto, NodeProto, TensorProto


@dataclass
class Scope:
    path: str                                   # "main", "main/loop_1.body", "function:dom.Fn"
    nodes: list[NodeProto]
    initializers: dict[str, TensorProto]
    parent: Scope | None = None
    formals: tuple[str, ...] = ()               # inputs of a function body
    graph_inputs: frozenset[str] = frozenset()  # runtime inputs of a graph
    producers: dict[str, tuple[NodeProto, int]] = field(default_factory=dict)
    consumers: dict[str, list[tuple[NodeProto, int]]] = field(default_factory=dict)
    call_sites: list[tuple[Scope, NodeProto]] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)       # id(node) → index in nodes
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # graph inputs of fully static shape
    input_types: dict[str, int] = field(default_factory=dict)  # graph inputs' declared element types
    #: a control-flow body: the node that runs it, under which attribute, its inputs and outputs in order
    owner: NodeProto | None = None
    owner_attr: str = ""
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for position, node in enumerate(self.nodes):
            self.positions[id(node)] = position
            for index, name in enumerate(node.output):
                if name:
                    self.producers[name] = (node, index)
            for slot, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, slot))


@dataclass(frozen=True)
class Definition:
    """What a name means where it is used."""

    scope: Scope
    kind: str                       # initializer | node | formal | graph_input | undefined
    tensor: TensorProto | None = None
    node: NodeProto | None = None
    index: int = 0                  # output index of the node, or position of the formal


def node_label(node: NodeProto, position: int) -> str:
    return node.name or f"{node.op_type}_{position}"


def node_name(scope: Scope, node: NodeProto) -> str:
    """A node's name, or ``Op_index`` for an unnamed one."""
    return node_label(node, scope.positions.get(id(node), 0))


def attribute(node: NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _subgraphs(node: NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == AttributeProto.GRAPHS:
            for i, graph in enumerate(attr.graphs):
                yield f"{attr.name}[{i}]", graph


def _element_types(graph: onnx.GraphProto) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in graph.input
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}


def _static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """The declared shapes of the graph inputs whose every dimension is a number."""
    shapes = {}
    for value in graph.input:
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


class ModelGraph:
    """All scopes of a model and name resolution across them."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.scopes: list[Scope] = []
        #: the default domain's opset (Scan before opset 9 takes its inputs another way)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self._add_graph("main", model.graph, None)
        by_key: dict[tuple[str, str], Scope] = {}
        for function in model.functions:
            path = f"function:{function.domain}.{function.name}" if function.domain else f"function:{function.name}"
            scope = Scope(path, list(function.node), {}, None, tuple(function.input))
            by_key[(function.domain, function.name)] = scope
            self.scopes.append(scope)
            self._add_subgraphs(scope)
        for scope in self.scopes:
            for node in scope.nodes:
                body = by_key.get((node.domain, node.op_type))
                if body is not None:
                    body.call_sites.append((scope, node))

    def _add_graph(self, path: str, graph: onnx.GraphProto, parent: Scope | None,
                   owner: NodeProto | None = None, owner_attr: str = "") -> Scope:
        scope = Scope(path, list(graph.node), {t.name: t for t in graph.initializer}, parent,
                      graph_inputs=frozenset(i.name for i in graph.input), input_shapes=_static_shapes(graph),
                      input_types=_element_types(graph), owner=owner, owner_attr=owner_attr,
                      input_names=tuple(i.name for i in graph.input),
                      output_names=tuple(o.name for o in graph.output))
        self.scopes.append(scope)
        self._add_subgraphs(scope)
        return scope

    def _add_subgraphs(self, scope: Scope) -> None:
        for position, node in enumerate(scope.nodes):
            for attr_name, graph in _subgraphs(node):
                self._add_graph(f"{scope.path}/{node_label(node, position)}.{attr_name}", graph, scope,
                                node, attr_name)

    def resolve(self, scope: Scope, name: str) -> Definition:
        current: Scope | None = scope
        while current is not None:
            if name in current.producers:
                node, index = current.producers[name]
                return Definition(current, "node", node=node, index=index)
            if name in current.initializers:
                return Definition(current, "initializer", tensor=current.initializers[name])
            if name in current.formals:
                return Definition(current, "formal", index=current.formals.index(name))
            if name in current.graph_inputs:
                return Definition(current, "graph_input")
            current = current.parent
        return Definition(scope, "undefined")
