"""Body animation: HumanML3D/MotionGPT joints → bone rotations (``skeleton``), audio2photoreal exports (``a2p``),
BVH files (``bvh``), the VMC protocol over OSC (``vmc``) and the clip player behind ``motion/vmc_cli.py`` (``player``)."""
