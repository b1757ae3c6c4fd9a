"""The SN-Net model: anchor families, stitch configurations, the stitched network, FLOPs, LS init.

Owns: :mod:`.family` (registry and YAML family specs), :mod:`.stitching` (configuration ids and
positions), :mod:`.snnet` (the ``SNNet`` module, checkpoint loading/saving), :mod:`.flops`
(published FLOPs/params convention), :mod:`.lsinit` (least-squares init of stitching layers),
:mod:`.checkpoint` (the safe checkpoint reader), :mod:`.layers` (the stitching layer),
:mod:`.staged` + :mod:`.anchors` (Swin/ResNet/LeViT SN-Nets and the stage views of their timm
anchors), :mod:`.published` (official checkpoint layouts -> timm 1.0 keys).
May import: torch, timm, and the package's top-level helpers (errors, deps, fileio, selection).
:mod:`.family` and :mod:`.stitching` themselves import no torch.
"""
