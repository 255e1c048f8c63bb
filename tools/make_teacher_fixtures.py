#!/usr/bin/env python3
"""ONNX teacher fixtures: small models of each family, exported by
torch.onnx (legacy TorchScript exporter at opsets 13 and 17, and the dynamo
exporter), with onnxruntime's outputs recorded for tests/teacher_golden.rs.

    /tmp/ref/bin/pip install torch torchvision onnx onnxruntime onnxscript numpy
    /tmp/ref/bin/python tools/make_teacher_fixtures.py            # small, committed

Full-size models (torchvision ResNet-50, ViT-B/16) come from
tools/bench_onnxruntime_cpu.py, which exports them for local runs only.

Each model: random weights, eval mode, BatchNorm with non-trivial running
statistics. Writes tests/fixtures/teacher/<family>-<exporter>.onnx, the input
(<family>.input.npy, float32 NCHW) and onnxruntime's output
(<family>-<exporter>.ort.npy), plus cases.json listing them with versions.

    /tmp/ref/bin/python tools/make_teacher_fixtures.py --helper-only

writes only the models built with onnx.helper (forms torch does not export:
auto_pad SAME_UPPER/SAME_LOWER/VALID, model-local functions; a small
ResNeXt whose grouped layers the GPU's conv_grouped kernels take) and
updates their entries in cases.json; it needs onnx, onnxruntime and numpy,
not torch. `--helper-only resnext` writes that one model only.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import AttributeProto, TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "teacher")


def helper_weights(rng, shape, std=0.3):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def autopad_model(rng):
    """Conv and pooling with every auto_pad form; sizes chosen so SAME pads
    are odd (the UPPER/LOWER split matters)."""
    inits, nodes = [], []

    def w(name, shape, std=0.3):
        inits.append(numpy_helper.from_array(helper_weights(rng, shape, std), name))
        return name

    nodes += [
        helper.make_node("Conv", ["input", w("w1", (8, 3, 3, 3)), w("b1", (8,), 0.1)], ["c1"],
                         kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),  # 10 -> 5, pads (0, 1)
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", w("w2", (8, 8, 2, 2))], ["c2"], kernel_shape=[2, 2],
                         auto_pad="SAME_LOWER"),  # 5 -> 5, pads (1, 0)
        # (onnxruntime refuses SAME with dilation, so none here.)
        helper.make_node("Conv", ["c2", w("w3", (8, 8, 4, 4))], ["c3"], kernel_shape=[4, 4],
                         auto_pad="SAME_LOWER"),  # 5 -> 5, pads (2, 1)
        helper.make_node("MaxPool", ["c3"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         auto_pad="SAME_UPPER"),  # 5 -> 3, pads (0, 1)
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[2, 2], auto_pad="SAME_LOWER"),  # pads (1, 0)
        helper.make_node("AveragePool", ["p2"], ["p3"], kernel_shape=[2, 2], auto_pad="SAME_UPPER",
                         count_include_pad=1),  # pads (0, 1), zeros counted
        helper.make_node("Conv", ["p3", w("w4", (16, 8, 2, 2))], ["c4"], kernel_shape=[2, 2],
                         auto_pad="VALID"),  # 3 -> 2
        helper.make_node("GlobalAveragePool", ["c4"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", w("fc", (37, 16)), w("fcb", (37,), 0.1)], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "autopad",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 10, 10])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 37])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (3, 10, 10)


def functions_model(rng):
    """Model-local functions: XSigmoid (x·sigmoid(x)) called twice, and Head
    (Softmax(XSigmoid(x)) with `axis` a reference to the caller's attribute,
    default -1) called with and without it. Inner names (x, s, y) collide
    with the graph's on purpose."""
    dom = "dr.test"
    xsig = helper.make_function(dom, "XSigmoid", ["x"], ["y"], [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["y"])], [helper.make_opsetid("", 17)])
    softmax = helper.make_node("Softmax", ["t"], ["y"])
    softmax.attribute.append(helper.make_attribute_ref("axis", AttributeProto.INT))
    head = helper.make_function(dom, "Head", ["x"], ["y"], [
        helper.make_node("XSigmoid", ["x"], ["t"], domain=dom), softmax],
        [helper.make_opsetid("", 17), helper.make_opsetid(dom, 1)],
        attribute_protos=[helper.make_attribute("axis", -1)])
    inits = [numpy_helper.from_array(helper_weights(rng, (8, 3, 3, 3)), "w1"),
             numpy_helper.from_array(helper_weights(rng, (8, 8, 3, 3), 0.2), "w2"),
             numpy_helper.from_array(helper_weights(rng, (37, 8)), "fc")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("XSigmoid", ["c1"], ["s"], domain=dom, name="act1"),
        helper.make_node("Conv", ["s", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("XSigmoid", ["c2"], ["y"], domain=dom, name="act2"),
        helper.make_node("GlobalAveragePool", ["y"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["l"], transB=1),
        helper.make_node("Head", ["l"], ["h0"], domain=dom, name="head_batch", axis=0),
        helper.make_node("Head", ["l"], ["h1"], domain=dom, name="head_default"),
        helper.make_node("Add", ["h0", "h1"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "functions",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 37])], inits)
    model = helper.make_model(graph, functions=[xsig, head],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(dom, 1)])
    return model, (3, 8, 8)


def pad_model(rng):
    """Pad in every supported mode (Swin pads windows this way): constant
    with a value, reflect, edge, a negative pad (crop), and opset 18's axes."""
    inits = [numpy_helper.from_array(helper_weights(rng, (8, 3, 3, 3)), "w1"),
             numpy_helper.from_array(helper_weights(rng, (37, 8)), "fc"),
             numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64), "p_const"),
             numpy_helper.from_array(np.array(0.5, np.float32), "v"),
             numpy_helper.from_array(np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64), "p_reflect"),
             numpy_helper.from_array(np.array([0, 0, 1, -1, 0, 0, 2, 1], np.int64), "p_edge"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "p_axes"),
             numpy_helper.from_array(np.array([3], np.int64), "axes")]
    nodes = [
        helper.make_node("Pad", ["x", "p_const", "v"], ["a"]),
        helper.make_node("Pad", ["a", "p_reflect"], ["b"], mode="reflect"),
        helper.make_node("Pad", ["b", "p_edge"], ["c"], mode="edge"),
        helper.make_node("Pad", ["c", "p_axes", "", "axes"], ["d"]),
        helper.make_node("Conv", ["d", "w1"], ["e"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["e"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "pad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 7])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 37])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), (3, 6, 7)


def mask_model(rng):
    """What torchvision's Swin builds its shifted-window mask from: Range,
    ScatterND, Not and Where on values fixed by the shapes (folded at
    load), applied to the activations."""
    inits = [numpy_helper.from_array(helper_weights(rng, (4, 3, 3, 3)), "w1"),
             numpy_helper.from_array(helper_weights(rng, (37, 4 * 6 * 6)), "fc"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(6, np.int64), "six"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.zeros((6, 6), np.float32), "base"),
             numpy_helper.from_array(np.array([[1], [4]], np.int64), "rows"),
             numpy_helper.from_array(np.full((2, 6), 3.0, np.float32), "fill"),
             numpy_helper.from_array(np.array(3.0, np.float32), "three")]
    nodes = [
        helper.make_node("Range", ["zero", "six", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("ScatterND", ["base", "rows", "fill"], ["m0"]),
        helper.make_node("Add", ["m0", "rf"], ["m1"]),
        helper.make_node("Equal", ["m1", "three"], ["lt"]),
        helper.make_node("Not", ["lt"], ["keep"]),
        helper.make_node("Conv", ["x", "w1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Where", ["keep", "c", "m1"], ["masked"]),
        helper.make_node("Flatten", ["masked"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "mask",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 37])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (3, 6, 6)


def fixedbatch_model(rng):
    """An input with a fixed batch of 2 (the dynamo exporter's default):
    dr runs other batch sizes in padded chunks of 2."""
    inits = [numpy_helper.from_array(helper_weights(rng, (8, 3, 3, 3)), "w1"),
             numpy_helper.from_array(helper_weights(rng, (37, 8)), "fc")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "fixedbatch",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 37])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (3, 6, 6)


def resnext_model(rng):
    """A small ResNeXt: three bottlenecks whose grouped 3x3 convolutions have
    8 (32x32), 16 (stride 2) and 32 (16x16) channels a group, each conv
    followed by BatchNormalization with non-trivial statistics, projection
    and identity shortcuts: the layers kernels/conv_grouped.cu takes on the
    GPU (64 and 128 channels, multiples of its 64-channel tile)."""
    inits, nodes = [], []
    count = [0]

    def name(prefix):
        count[0] += 1
        return f"{prefix}{count[0]}"

    def conv_bn(x, cin, cout, k, stride=1, groups=1, relu=True):
        w = name("w")
        inits.append(numpy_helper.from_array(
            helper_weights(rng, (cout, cin // groups, k, k), (2.0 / (cin // groups * k * k)) ** 0.5), w))
        c = name("c")
        nodes.append(helper.make_node("Conv", [x, w], [c], kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4, group=groups))
        bn = [name("bn") for _ in range(4)]
        for t, v in zip(bn, [1.0 + 0.2 * rng.standard_normal(cout), 0.1 * rng.standard_normal(cout),
                             0.1 * rng.standard_normal(cout), 0.5 + rng.random(cout)]):
            inits.append(numpy_helper.from_array(v.astype(np.float32), t))
        y = name("b")
        nodes.append(helper.make_node("BatchNormalization", [c] + bn, [y], epsilon=1e-5))
        if not relu:
            return y
        r = name("r")
        nodes.append(helper.make_node("Relu", [y], [r]))
        return r

    def block(x, cin, width, cout, groups, stride):
        h = conv_bn(x, cin, width, 1)
        h = conv_bn(h, width, width, 3, stride, groups)
        h = conv_bn(h, width, cout, 1, relu=False)
        short = x if (cin, stride) == (cout, 1) else conv_bn(x, cin, cout, 1, stride, relu=False)
        s, r = name("add"), name("r")
        nodes.extend([helper.make_node("Add", [h, short], [s]), helper.make_node("Relu", [s], [r])])
        return r

    x = conv_bn("x", 3, 32, 3)
    x = block(x, 32, 64, 64, 8, 1)      # Ng 8
    x = block(x, 64, 128, 128, 8, 2)    # Ng 16, stride 2
    x = block(x, 128, 128, 128, 4, 1)   # Ng 32
    inits.append(numpy_helper.from_array(helper_weights(rng, (37, 128), 0.1), "fc"))
    inits.append(numpy_helper.from_array(helper_weights(rng, (37,), 0.1), "fcb"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "resnext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 37])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (3, 32, 32)


HELPER_FAMILIES = {"autopad": autopad_model, "functions": functions_model, "pad": pad_model,
                   "mask": mask_model, "fixedbatch": fixedbatch_model, "resnext": resnext_model}


def helper_cases(out, only=None):
    """Writes the onnx.helper models (those named in `only`, default all)
    with onnxruntime's outputs; returns their cases."""
    cases = []
    for fam, build in HELPER_FAMILIES.items():
        if only and fam not in only:
            continue
        rng = np.random.default_rng(0)
        model, shape = build(rng)
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(out, f"{fam}-helper.onnx")
        onnx.save(model, path)
        x = rng.standard_normal((2,) + shape).astype(np.float32)
        np.save(os.path.join(out, f"{fam}.input.npy"), x)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        np.save(os.path.join(out, f"{fam}-helper.ort.npy"), y)
        ops = sorted({n.op_type for n in model.graph.node})
        print(f"{fam}-helper: ops {ops}, output {y.shape}")
        opset = max(o.version for o in model.opset_import if o.domain == "")
        cases.append({"family": fam, "exporter": "helper", "model": os.path.basename(path), "opset": opset,
                      "input": f"{fam}.input.npy", "output": f"{fam}-helper.ort.npy", "ops": ops})
    return cases


def resize_golden(out):
    """onnxruntime's Resize(linear, antialias=1, half_pixel, exclude_outside=1)
    of one input to a smaller and a larger size: the reference for dr's
    resize of --input tensors for ensemble members of another size.
    exclude_outside=1 drops taps outside the image and renormalises, as
    torchvision's F.resize(tensor, antialias=True) and Pillow do (with 0,
    onnxruntime repeats the edge pixel instead)."""
    x = np.random.default_rng(1).standard_normal((2, 3, 19, 23)).astype(np.float32)
    np.save(os.path.join(out, "resize.input.npy"), x)
    for tag, size in [("down", (8, 9)), ("up", (31, 40))]:
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", antialias=1,
                                coordinate_transformation_mode="half_pixel", exclude_outside=1)
        sizes = numpy_helper.from_array(np.array([2, 3, *size], np.int64), "sizes")
        graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [sizes])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.save(os.path.join(out, f"resize-{tag}.ort.npy"), sess.run(None, {"x": x})[0])


def write_cases(out, cases, versions):
    path = os.path.join(out, "cases.json")
    meta = {"versions": {}, "cases": []}
    if os.path.exists(path):
        with open(path) as f:
            meta = json.load(f)
    names = {c["model"] for c in cases}
    meta["cases"] = [c for c in meta["cases"] if c["model"] not in names] + cases
    meta["versions"].update(versions)
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__" and "--helper-only" in sys.argv:
    # --helper-only [FAMILY ...]: only those helper models (default all, and the resize goldens).
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not only:
        resize_golden(OUT)
    write_cases(OUT, helper_cases(OUT, only), {"onnx": onnx.__version__, "onnxruntime": ort.__version__})
    sys.exit(0)

import torch  # noqa: E402 (--helper-only runs without torch)
import torch.nn as nn  # noqa: E402


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


class Block(nn.Module):
    """ResNet basic block / ResNeXt bottleneck (groups) with optional downsample."""

    def __init__(self, cin, cout, stride, groups=1, bottleneck=False):
        super().__init__()
        mid = cout // 2 if bottleneck else cout
        if bottleneck:
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        return self.relu(self.body(x) + idt)


class TinyResNet(nn.Module):
    """The ops of ResNet/ResNeXt/Wide-ResNet/ig_resnext: 7x7 stem, BN, ReLU,
    max pool, basic and grouped bottleneck blocks, global pool, FC."""

    def __init__(self, classes=37):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2, groups=8, bottleneck=True),
                                    Block(64, 64, 1, groups=8, bottleneck=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r, act, gate):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.act, self.fc2, self.gate = nn.Conv2d(c, r, 1), act(), nn.Conv2d(r, c, 1), gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 and EfficientNet (MBConv) block: expand, depthwise, SE, project."""

    def __init__(self, cin, cout, k, stride, expand, act, se_gate=None):
        super().__init__()
        mid = cin * expand
        layers = [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(),
                  nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), act()]
        if se_gate is not None:
            layers.append(SqueezeExcite(mid, max(4, mid // 4), act if act is not nn.ReLU6 else nn.ReLU, se_gate))
        layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class TinyMobileNet(nn.Module):
    """MobileNetV2 (ReLU6) and V3 (hard-swish, SE with hard-sigmoid) patterns."""

    def __init__(self, classes=37):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 3, 1, 2, nn.ReLU6),
            InvertedResidual(16, 24, 3, 2, 3, nn.ReLU6),
            InvertedResidual(24, 24, 5, 1, 3, nn.Hardswish, nn.Hardsigmoid),
            InvertedResidual(24, 40, 5, 2, 3, nn.Hardswish, nn.Hardsigmoid))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 64), nn.Hardswish(),
                                  nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class TinyEfficientNet(nn.Module):
    """EfficientNet: SiLU everywhere, MBConv with SE (sigmoid gate), 5x5 depthwise."""

    def __init__(self, classes=37):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 3, 1, 1, nn.SiLU, nn.Sigmoid),
            InvertedResidual(16, 24, 3, 2, 4, nn.SiLU, nn.Sigmoid),
            InvertedResidual(24, 24, 5, 1, 4, nn.SiLU, nn.Sigmoid),
            InvertedResidual(24, 32, 5, 2, 4, nn.SiLU, nn.Sigmoid))
        self.head = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.SiLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.f = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 2 * growth, 1, bias=False),
                               nn.BatchNorm2d(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.f(x)], 1)


class TinyDenseNet(nn.Module):
    """DenseNet: pre-activation BN-ReLU-conv (BN not foldable), concat, avg-pool transitions."""

    def __init__(self, classes=37):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.block1 = nn.Sequential(DenseLayer(16, 8), DenseLayer(24, 8))
        self.trans = nn.Sequential(nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 16, 1, bias=False), nn.AvgPool2d(2, 2))
        self.block2 = nn.Sequential(DenseLayer(16, 8), DenseLayer(24, 8))
        self.head = nn.Sequential(nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes))

    def forward(self, x):
        return self.head(self.block2(self.trans(self.block1(self.stem(x)))))


class LayerNorm2d(nn.LayerNorm):
    """Channels-first LayerNorm as timm's ConvNeXt writes it (permute, LN, permute)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, 1, 3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.act, self.fc2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.rand(c) * 0.5 + 0.1)  # layer scale

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(self.act(self.fc1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class TinyConvNeXt(nn.Module):
    """ConvNeXt: patchify stem, 7x7 depthwise, channels-last LayerNorm, GELU MLP, layer scale."""

    def __init__(self, classes=37):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, 4), LayerNorm2d(16, eps=1e-6))
        self.stage1 = nn.Sequential(ConvNeXtBlock(16), ConvNeXtBlock(16))
        self.down = nn.Sequential(LayerNorm2d(16, eps=1e-6), nn.Conv2d(16, 32, 2, 2))
        self.stage2 = ConvNeXtBlock(32)
        self.norm = nn.LayerNorm(32, eps=1e-6)
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean((2, 3))))


class Attention(nn.Module):
    """timm-style attention: fused qkv, heads split by reshape/permute, SDPA."""

    sdpa = False  # F.scaled_dot_product_attention needs opset >= 14 in the legacy exporter

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, bias=None):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if bias is None and Attention.sdpa:
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        elif bias is None:
            y = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        else:
            attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1) + bias
            y = attn.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class ViTBlock(nn.Module):
    def __init__(self, dim, heads, approx="none"):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate=approx), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class TinyViT(nn.Module):
    """ViT/DeiT: patch embedding conv, class token, position embedding, pre-norm
    blocks (erf and tanh GELU), class-token head."""

    def __init__(self, classes=37, dim=32):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.5)
        self.blocks = nn.Sequential(ViTBlock(dim, 2), ViTBlock(dim, 2, "tanh"))
        self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def window_partition(x, w):
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def window_reverse(x, w, h, wd):
    c = x.shape[-1]
    x = x.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, wd, c)


class SwinBlock(nn.Module):
    """Window attention with relative position bias; shifted windows via torch.roll and a mask."""

    def __init__(self, dim, heads, res, window, shift):
        super().__init__()
        self.res, self.w, self.shift, self.heads = res, window, shift, heads
        self.n1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)
        mask = None
        if shift:
            img = torch.zeros(1, res, res, 1)
            cnt = 0
            for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                    img[:, hs, ws, :] = cnt
                    cnt += 1
            mw = window_partition(img, window).squeeze(-1)
            mask = (mw[:, None, :] - mw[:, :, None]).ne(0).float() * -100.0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        b, n, c = x.shape
        y = self.n1(x).view(b, self.res, self.res, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        win = window_partition(y, self.w)
        bias = self.table[self.index.reshape(-1)].reshape(self.w * self.w, self.w * self.w, -1).permute(2, 0, 1)
        if self.mask is not None:
            nw = self.mask.shape[0]
            bias = (bias.unsqueeze(0) + self.mask.unsqueeze(1)).repeat(b, 1, 1, 1)
            bias = bias.reshape(b * nw, self.heads, self.w * self.w, self.w * self.w)
        y = window_reverse(self.attn(win, bias), self.w, self.res, self.res)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.n2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim, res):
        super().__init__()
        self.res, self.norm, self.red = res, nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, n, c = x.shape
        x = x.view(b, self.res, self.res, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.red(self.norm(x.view(b, -1, 4 * c)))


class TinyViTSdpa(TinyViT):
    """The same ViT with fused attention (exported from opset 14 on)."""

    def forward(self, x):
        Attention.sdpa = True
        try:
            return super().forward(x)
        finally:
            Attention.sdpa = False


class TinySwin(nn.Module):
    """Swin: patch embed, window and shifted-window attention with relative
    position bias and masks, patch merging, mean-pooled head."""

    def __init__(self, classes=37):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, 4)
        self.pnorm = nn.LayerNorm(16)
        self.s1 = nn.Sequential(SwinBlock(16, 2, 8, 4, 0), SwinBlock(16, 2, 8, 4, 2))
        self.merge = PatchMerging(16, 8)
        self.s2 = SwinBlock(32, 2, 4, 4, 0)
        self.norm, self.head = nn.LayerNorm(32), nn.Linear(32, classes)

    def forward(self, x):
        x = self.pnorm(self.patch(x).flatten(2).transpose(1, 2))
        x = self.s2(self.merge(self.s1(x)))
        return self.head(self.norm(x).mean(1))


FAMILIES = {
    "resnet": (TinyResNet, (3, 32, 32)),
    "mobilenet": (TinyMobileNet, (3, 32, 32)),
    "efficientnet": (TinyEfficientNet, (3, 32, 32)),
    "densenet": (TinyDenseNet, (3, 32, 32)),
    "convnext": (TinyConvNeXt, (3, 32, 32)),
    "vit": (TinyViT, (3, 32, 32)),
    "vit_sdpa": (TinyViTSdpa, (3, 32, 32)),
    "swin": (TinySwin, (3, 32, 32)),
}


def export(model, x, path, kind):
    if kind == "legacy13":
        torch.onnx.export(model, x, path, opset_version=13, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    elif kind == "legacy17-unfolded":
        # BatchNorm kept as its own node (the exporter's conv-BN fusion off),
        # for dr's fold_batchnorm pass.
        torch.onnx.export(model, x, path, opset_version=17, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    elif kind == "legacy17":
        torch.onnx.export(model, x, path, opset_version=17, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    else:
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, external_data=False)
    onnx.checker.check_model(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--helper-only", action="store_true", help="only the onnx.helper models (no torch)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cases = []
    for fam, (ctor, shape) in FAMILIES.items():
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        model = randomize_bn(ctor(), gen)
        x = torch.randn((2,) + shape, generator=gen)
        np.save(os.path.join(a.out, f"{fam}.input.npy"), x.numpy())
        with torch.no_grad():
            ref = model(x).numpy()
        for kind in ["legacy13", "legacy17", "dynamo"] + (["legacy17-unfolded"] if fam == "resnet" else []):
            if fam == "vit_sdpa" and kind == "legacy13":
                continue
            path = os.path.join(a.out, f"{fam}-{kind}.onnx")
            export(model, x, path, kind)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
            np.save(os.path.join(a.out, f"{fam}-{kind}.ort.npy"), y)
            m = onnx.load(path)
            ops = sorted({n.op_type for n in m.graph.node})
            opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
            err = float(np.abs(y - ref).max() / (np.abs(ref).max() + 1e-12))
            print(f"{fam}-{kind}: opset {opset}, {len(m.graph.node)} nodes, ops {ops}, ort vs torch rel {err:.2e}")
            cases.append({"family": fam, "exporter": kind, "model": os.path.basename(path), "opset": opset,
                          "input": f"{fam}.input.npy", "output": os.path.basename(path)[:-5] + ".ort.npy",
                          "ops": ops})
    # Models for the error paths (tests/teacher_errors.rs).
    model = randomize_bn(TinyResNet(), torch.Generator().manual_seed(1))
    x = torch.randn(1, 3, 32, 32)
    torch.onnx.export(model, (x,), os.path.join(a.out, "resnet-external.onnx"), dynamo=True,
                      input_names=["input"], output_names=["logits"], external_data=True)
    with torch.no_grad():
        np.save(os.path.join(a.out, "resnet-external.torch.npy"), model(x).numpy())
    np.save(os.path.join(a.out, "resnet-external.input.npy"), x.numpy())
    torch.onnx.export(model, x, os.path.join(a.out, "resnet-dynamic-hw.onnx"), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}})

    class CumSum(nn.Module):
        def forward(self, x):
            return x.cumsum(1).mean((2, 3))

    torch.onnx.export(CumSum(), x, os.path.join(a.out, "unsupported-cumsum.onnx"), opset_version=17, dynamo=False)
    cases += helper_cases(a.out)
    resize_golden(a.out)
    meta = {"versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
            "cases": cases}
    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
