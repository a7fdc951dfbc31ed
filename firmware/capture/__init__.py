# Block capture from the chips into preallocated buffers; every lost sample counted.
