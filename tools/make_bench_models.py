#!/usr/bin/env python3
"""ResNet-50 and ViT-B/16 for `dr bench model` built with onnx.helper alone
(no torch): torchvision's architectures as the legacy exporter writes them
at opset 17 (BatchNorm folded into conv biases; attention as
MatMul/Softmax/MatMul, GELU as its erf decomposition), random weights
scaled so activations stay O(1). For machines where torch cannot be
installed; tools/bench_onnxruntime_cpu.py uses it then.

    /tmp/ref/bin/pip install onnx numpy
    /tmp/ref/bin/python tools/make_bench_models.py --models-dir /tmp/dr-bench-models
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}_{self.n}"

    def const(self, arr, p="c"):
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def randn(self, shape, std, p="w"):
        return self.const((self.rng.standard_normal(shape) * std).astype(np.float32), p)

    def op(self, t, ins, outs=1, **attrs):
        names = [self.name(t.lower()) for _ in range(outs)]
        self.nodes.append(helper.make_node(t, ins, names, name=names[0], **attrs))
        return names[0] if outs == 1 else names

    def conv(self, x, cin, cout, k, stride=1, pad=0, gain=1.0):
        w = self.randn((cout, cin, k, k), gain * np.sqrt(2.0 / (cin * k * k)))
        b = self.randn((cout,), 0.05, "b")
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def model(self, x, y, out_shape, opset=17):
        g = helper.make_graph(self.nodes, "g", [x], [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_bench_models")
        m.ir_version = 8
        return m


def resnet50():
    b = Builder(0)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])
    h = b.op("Relu", [b.conv("input", 3, 64, 7, 2, 3)])
    h = b.op("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            s = stride if i == 0 else 1
            y = b.op("Relu", [b.conv(h, cin, width, 1)])
            y = b.op("Relu", [b.conv(y, width, width, 3, s, 1)])
            y = b.conv(y, width, width * 4, 1, gain=0.2)
            idt = b.conv(h, cin, width * 4, 1, s) if i == 0 else h
            h = b.op("Relu", [b.op("Add", [y, idt])])
            cin = width * 4
    h = b.op("Flatten", [b.op("GlobalAveragePool", [h])], axis=1)
    y = b.op("Gemm", [h, b.randn((1000, 2048), 0.02), b.randn((1000,), 0.01, "b")], transB=1)
    return b.model(x, y, ["batch", 1000])


def vit_b_16():
    b = Builder(1)
    d, heads, tokens = 768, 12, 197
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])
    p = b.conv("input", 3, d, 16, 16)
    p = b.op("Transpose", [b.op("Reshape", [p, b.const(np.array([0, d, -1], np.int64))])], perm=[0, 2, 1])
    n = b.op("Gather", [b.op("Shape", ["input"]), b.const(np.array(0, np.int64))], axis=0)
    shape = b.op("Concat", [b.op("Unsqueeze", [n, b.const(np.array([0], np.int64))]),
                            b.const(np.array([1, d], np.int64))], axis=0)
    cls = b.op("Expand", [b.randn((1, 1, d), 0.02), shape])
    h = b.op("Add", [b.op("Concat", [cls, p], axis=1), b.randn((1, tokens, d), 0.02)])

    def ln(v):
        return b.op("LayerNormalization", [v, b.const(np.ones(d, np.float32)), b.const(np.zeros(d, np.float32))],
                    axis=-1, epsilon=1e-6)

    def linear(v, cin, cout, gain=1.0):
        return b.op("Add", [b.op("MatMul", [v, b.randn((cin, cout), gain / np.sqrt(cin))]),
                            b.randn((cout,), 0.02, "b")])

    def heads_of(v, perm):
        return b.op("Transpose", [b.op("Reshape", [v, b.const(np.array([0, tokens, heads, d // heads], np.int64))])],
                    perm=perm)

    for _ in range(12):
        y = ln(h)
        q = heads_of(linear(y, d, d), [0, 2, 1, 3])
        k = heads_of(linear(y, d, d), [0, 2, 3, 1])
        v = heads_of(linear(y, d, d), [0, 2, 1, 3])
        s = b.op("MatMul", [b.op("Mul", [q, b.const(np.array(0.125, np.float32))]), k])
        a = b.op("MatMul", [b.op("Softmax", [s], axis=-1), v])
        a = b.op("Reshape", [b.op("Transpose", [a], perm=[0, 2, 1, 3]), b.const(np.array([0, tokens, d], np.int64))])
        h = b.op("Add", [h, linear(a, d, d, 0.5)])
        y = linear(ln(h), d, 4 * d)
        e = b.op("Erf", [b.op("Div", [y, b.const(np.array(np.sqrt(2.0), np.float32))])])
        g = b.op("Mul", [b.op("Mul", [y, b.op("Add", [e, b.const(np.array(1.0, np.float32))])]),
                         b.const(np.array(0.5, np.float32))])
        h = b.op("Add", [h, linear(g, 4 * d, d, 0.5)])
    h = b.op("Gather", [ln(h), b.const(np.array(0, np.int64))], axis=1)
    y = b.op("Gemm", [h, b.randn((1000, d), 0.02), b.randn((1000,), 0.01, "b")], transB=1)
    return b.model(x, y, ["batch", 1000])


def build(models_dir):
    os.makedirs(models_dir, exist_ok=True)
    paths = {}
    for name, f in [("resnet50", resnet50), ("vit_b_16", vit_b_16)]:
        path = os.path.join(models_dir, f"{name}.onnx")
        if not os.path.exists(path):
            m = f()
            onnx.checker.check_model(m)
            onnx.save(m, path)
        paths[name] = path
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default="/tmp/dr-bench-models")
    for k, v in build(ap.parse_args().models_dir).items():
        print(k, v)
