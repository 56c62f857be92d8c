/* Interface of backend/: how a model's MLP chooses its neurons, one
 * definition for both backends and the commands that pick a mode. */
#ifndef SP_MLP_MODE_H
#define SP_MLP_MODE_H

#pragma GCC visibility push(default) /* this layer's interface: exported to the layers above */

typedef enum sp_mlp_mode {
    SP_MLP_AUTO = 0,     /* LTE routers where the model has them, else dense */
    SP_MLP_DENSE,        /* every neuron, routers ignored */
    SP_MLP_THRESHOLD     /* training-free: keep neurons with |silu(gate)| > t_layer */
} sp_mlp_mode;

#pragma GCC visibility pop
#endif
