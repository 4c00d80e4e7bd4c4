"""Writes the TorchScript file of a registered expert class for ``hivemind-server``.

    python3 -m hivemind_cpp.export_expert my_experts.py my_mlp --hidden_dim 512 -o my_mlp.pt
    hivemind-server --expert_cls torchscript --module_path my_mlp.pt --reinit --hidden_dim 512 ...

``my_experts.py`` defines the class with ``@hivemind_cpp.register_expert_class(name, sample_input)``
(hivemind's ``--custom_module_path`` file works as it is once its import says ``hivemind_cpp``).
Exit status 0 on success, 2 with a message naming the problem otherwise.
"""

import argparse
import sys

from . import expert_class


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m hivemind_cpp.export_expert",
        description="Compile a registered expert class to the TorchScript file hivemind-server "
                    "hosts with --expert_cls torchscript --module_path FILE.")
    parser.add_argument("custom_module_path", help="Python file registering the class")
    parser.add_argument("expert_cls", help="the name given to register_expert_class")
    parser.add_argument("--hidden_dim", type=int, required=True,
                        help="passed to the class's constructor and sample_input")
    parser.add_argument("-o", "--output", required=True, help="the .pt file to write")
    args = parser.parse_args(argv)
    if args.hidden_dim <= 0:
        parser.error(f"--hidden_dim must be positive, got {args.hidden_dim}")
    try:
        expert_class.add_custom_models_from_file(args.custom_module_path)
        path = expert_class.export_expert_class(args.expert_cls, args.hidden_dim, args.output)
    except Exception as e:  # reported, not a traceback: the user's input was wrong
        print(f"export_expert: {e}", file=sys.stderr)
        return 2
    print(f"export_expert: wrote {path} ({args.expert_cls}, hidden_dim {args.hidden_dim})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
